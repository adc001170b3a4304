// Package lucid is a LUCID-style detector of DDoS flows: a small 1-D
// convolutional network over the first n packets of a bidirectional
// session (Doriguzzi-Corin et al., "LUCID: A Practical, Lightweight Deep
// Learning Solution for DDoS Attack Detection", IEEE TNSM 2020).
//
// A session's packets (ddosfeat.PacketFeatures from the kernel probe)
// become an n x F matrix (FromPackets, one row per packet, zero padded).
// A Normalizer learned from training data scales every feature to [0,1].
// The Model applies K convolution kernels of h x F over the packets,
// ReLU, global max pooling over packet positions and a dense sigmoid
// unit: the score is the probability that the session is an attack.
//
// Train fits a model with binary cross-entropy and Adam, deterministic
// for a seed; Evaluate scores a labelled set; Save and Load read and
// write versioned JSON model files; Explain tells which packets and
// features drove a score.
package lucid
