// Package pfa detects slow denial-of-service attacks on a server from its
// network I/O (Cogo, RAID 2017): each connection's events become a stream
// of symbols, a probabilistic suffix automaton learned from benign
// traces says how surprising each symbol is, a connection whose recent
// symbols are too surprising is anomalous, and a process whose anomalous
// connections hold a large share of its connection limit, or whose
// connections are about to reach it, gets a Verdict: close those sockets.
//
// # Alphabet
//
// Events (accept, connect, recv, send, close of a socket of a process, from
// the netio probe) become symbols (Symbol, 15 bits; see its doc for the
// packing and SizeEdges, GapEdges, AgeEdges, RxEdges for the buckets):
//
//   - recv and send carry a log-scale size bucket (0, 1-15, 16-63,
//     64-511, 512-4095, 4-32K, >=32K bytes) and the bucket of the gap since
//     the connection's previous event (<1ms, <10ms, <100ms, <1s, <5s,
//     <15s, >=15s); close carries its gap; accept and connect nothing.
//   - tick: the symboliser runs on the events' time and on a clock
//     (Advance): a connection idle for a tick interval (default 1 s) emits
//     "tick:after-KIND:idleBUCKET" every interval, so a Slowloris
//     connection that trickles a header byte every 10 s, or a slow reader
//     that keeps the server's send blocked, produces evidence every second
//     between its rare events. Ticks have nominal times (last event + k
//     intervals), so a stream does not depend on how often Advance runs.
//   - state: the connection's state, the bucket of its age (<1s, <5s,
//     <15s, <60s, >=60s) and of the bytes it received so far (0, <128,
//     <1K, <8K, <64K, >=64K), is a symbol of its own, emitted when either
//     changes. Folding the state into every event symbol would multiply
//     the alphabet: a benign connection in a rare state (a long keep-alive
//     with big uploads) would then make every later symbol unseen; as a
//     symbol of its own it is surprising once, while "still 20 bytes
//     received at 15 s" stays visible.
//
// # Model
//
// The model (Learner, Model) is a variable-order Markov chain of bounded
// depth D (default 3, at most 4), i.e. a probabilistic suffix automaton
// whose states are the contexts (the last 0 to D symbols, Start at the
// beginning of a stream). Learning is one pass over the traces: each
// symbol increments the count of (context, symbol) for its D+1 suffix
// contexts in a hash map, so time is linear in the trace length and memory
// grows with the number of distinct contexts. Building the model then
// prunes contexts seen fewer than MinCount times (default 2), sorts each
// context's next symbols, and packs them in flat arrays (Stats: states,
// transitions, bytes). Save and Load write versioned JSON that records the
// alphabet; Load refuses another alphabet or a malformed file.
//
// # Smoothing
//
// Probabilities are Witten-Bell interpolated from the empty context up to
// the longest kept one (Model.Prob):
//
//	P_k(s) = (c_k(s) + T_k·P_{k-1}(s)) / (N_k + T_k),  P_{-1} = 1/SymbolSpace
//
// A context that saw T_k distinct symbols N_k times keeps T_k/(N_k+T_k)
// for the unseen ones, shared in proportion to the shorter context's
// estimate: an unseen transition of familiar symbols is improbable, a
// never-seen symbol (a tick after a recv, on a server that always answers
// at once) very improbable, and nothing has probability 0.
//
// # Thresholds
//
// A connection's score is the mean surprisal (-log2 p, bits) of its last
// W symbols (default 8; the first W-1 windows count missing symbols as
// 0). Calibrate scores held-out benign connections, takes the highest
// score each reached, and sets the threshold at their (1-TargetFPR)
// quantile (default 1e-4) times 1+Margin (default 0.25). A connection is
// anomalous from the first time its score exceeds the threshold; it keeps
// its most improbable symbols, with their contexts, as the explanation.
//
// # Exhaustion
//
// The Detector counts, per process group (one process, or all workers of
// a server: Config.GroupOf), its open, busy (anomalous, or idle for 10 s)
// and anomalous connections, samples them every tick, and fits a
// least-squares line to the open count over the last 10 s. A group gets a
// Verdict only when it has anomalous connections and either they hold at
// least Share (default 25%) of its Limit (Apache's MaxRequestWorkers: 16
// workers held by 4 Slowloris connections is an attack), or its open
// connections reach the limit, or are predicted to within Horizon
// (default 5 s). Anomalous connections alone are not enough: 50 Slowloris
// connections against an nginx that holds 4096 are not exhausting it.
// The verdict names the connections (with the thread that last used each),
// their scores and thresholds, the improbable symbols they share, the
// predicted time to exhaustion, and suggests closing the sockets.
//
// Time is an input everywhere (event times, Advance): nothing here reads
// the clock, so replays and tests are deterministic.
package pfa
