package respond

import (
	"context"
	"fmt"
	"net/netip"
	"strings"
	"time"

	"github.com/rampart-shield/rampart/internal/alert"
	"github.com/rampart-shield/rampart/internal/firewall"
)

// ours reports whether the responder added the rule.
func ours(r firewall.Rule) bool { return strings.HasPrefix(r.Description, DescriptionPrefix) }

// tag is the description of the rules one alert's mitigation adds.
func tag(a alert.Alert) string { return truncate(DescriptionPrefix+a.Kind+" "+short(a.ID), 63) }

// existing lists the responder's own ingress rules, keyed by key(rule).
func (r *Responder) existing(key func(firewall.Rule) string) map[string]firewall.Rule {
	out := map[string]firewall.Rule{}
	if r.opts.Firewall == nil {
		return out
	}
	rules, err := r.opts.Firewall.Rules()
	if err != nil {
		return out
	}
	for _, fr := range rules {
		if ours(fr) && fr.Direction != firewall.Egress {
			out[key(fr)] = fr
		}
	}
	return out
}

func noFirewall(mode string, fw Firewall) bool { return fw == nil && mode == Enforce }

const noFirewallMsg = "no firewall is running (start the agent with --firewall IFACE)"

func srcKey(fr firewall.Rule) string { return fr.Src + " " + fr.Action }

// block adds a drop (or rate-limit) rule per source, or extends the one
// it already has for that source.
func (r *Responder) block(a alert.Alert, rule compiled, base Decision) []Decision {
	r.mu.Lock()
	defer r.mu.Unlock()
	mode := r.mode
	base.Mode = mode
	if len(a.Subject.Sources) == 0 {
		base.Outcome, base.Detail = Failed, "the alert names no source to "+base.Action
		return []Decision{r.recordLocked(base)}
	}
	if noFirewall(mode, r.opts.Firewall) {
		base.Outcome, base.Detail = Failed, noFirewallMsg
		return []Decision{r.recordLocked(base)}
	}
	have := r.existing(srcKey)
	expires := base.Time.Add(rule.duration)
	action := firewall.ActionDrop
	if base.Action == ActRateLimit {
		action = firewall.ActionRateLimit
	}
	var ops []firewall.Op
	var added, extended, out []Decision
	extend := map[string]bool{}
	seen := map[netip.Prefix]bool{}
	for _, s := range a.Subject.Sources {
		p, err := widen(s, rule)
		if err != nil || seen[p] {
			continue
		}
		seen[p] = true
		d := base
		d.Target = prefixText(p)
		if why, ok := r.allowlisted(p, base.Time); ok {
			d.Outcome, d.Detail = Allowlisted, why
			out = append(out, r.recordLocked(d))
			continue
		}
		d.Expires = expires
		if fr, ok := have[d.Target+" "+action]; ok {
			// Still attacking: push the expiry out (no new rule, no token).
			d.Outcome, d.Detail = Extended, fmt.Sprintf("rule %d", fr.ID)
			if mode == Observe {
				d.Outcome, d.Detail = Observed, "would extend rule "+fmt.Sprint(fr.ID)
			}
			extend[d.Target+" "+action] = true
			extended = append(extended, d)
			continue
		}
		if !r.take(base.Action, base.Time) {
			d.Outcome, d.Detail, d.Expires = RateLimited, fmt.Sprintf("more than %g new %s actions per second", r.buckets[base.Action].max, base.Action), time.Time{}
			out = append(out, r.recordLocked(d))
			continue
		}
		fr := firewall.Rule{Src: d.Target, Action: action, TTL: rule.duration.String(), Description: tag(a)}
		if action == firewall.ActionRateLimit {
			fr.Rate, fr.Burst = rule.Rate, rule.Burst
		}
		d.Outcome = Applied
		if mode == Observe {
			d.Outcome, d.Detail = Observed, "would add: "+fr.Action+" src "+d.Target+" for "+rule.duration.String()
		}
		ops = append(ops, firewall.Op{Op: "append", Rule: fr})
		added = append(added, d)
	}
	if mode == Enforce {
		r.durations[tag(a)] = rule.duration
		if len(extend) > 0 {
			if _, err := r.opts.Firewall.Extend(func(fr firewall.Rule) bool { return ours(fr) && extend[srcKey(fr)] }, expires); err != nil {
				fail(extended, err)
			}
		}
		if len(ops) > 0 {
			if err := r.opts.Firewall.Apply(ops); err != nil {
				fail(added, err)
			}
		}
	}
	for _, d := range append(extended, added...) {
		out = append(out, r.recordLocked(d))
	}
	return out
}

func fail(ds []Decision, err error) {
	for i := range ds {
		ds[i].Outcome, ds[i].Detail, ds[i].Expires = Failed, err.Error(), time.Time{}
	}
}

// signature is the part of a filter rule that names the attack.
func signature(fr firewall.Rule) string {
	return strings.Join([]string{fr.Dst, fr.Proto, fr.Sport, fr.Dport, fr.TCPFlags}, " ")
}

// filter drops the attack's signature to its destination, except from the
// verified clients and the allowlisted addresses, which get pass rules for
// the same signature (more specific prefixes win in the firewall).
func (r *Responder) filter(a alert.Alert, rule compiled, base Decision) Decision {
	r.mu.Lock()
	defer r.mu.Unlock()
	mode := r.mode
	base.Mode = mode
	dst, err := netip.ParseAddr(a.Subject.Dst)
	if err != nil || a.Subject.Proto == "" {
		base.Outcome, base.Detail = Failed, "a filter needs the alert's destination and protocol"
		return r.recordLocked(base)
	}
	dst = dst.Unmap()
	if noFirewall(mode, r.opts.Firewall) {
		base.Outcome, base.Detail = Failed, noFirewallMsg
		return r.recordLocked(base)
	}
	sig := firewall.Rule{Dst: dst.String(), Proto: a.Subject.Proto, TCPFlags: a.Subject.TCPFlags, Action: firewall.ActionDrop,
		TTL: rule.duration.String(), Description: tag(a)}
	if a.Subject.Port != 0 {
		sig.Dport = fmt.Sprint(a.Subject.Port)
	}
	if a.Subject.SrcPort != 0 {
		sig.Sport = fmt.Sprint(a.Subject.SrcPort)
	}
	base.Target = describeSig(sig)
	base.Expires = base.Time.Add(rule.duration)
	have := r.existing(func(fr firewall.Rule) string {
		if fr.Src != "" || fr.Action != firewall.ActionDrop {
			return ""
		}
		return signature(fr)
	})
	if fr, ok := have[signature(sig)]; ok {
		base.Outcome, base.Detail = Extended, fmt.Sprintf("rule %d and its pass rules", fr.ID)
		if mode == Observe {
			base.Outcome, base.Detail = Observed, "would extend rule "+fmt.Sprint(fr.ID)
			return r.recordLocked(base)
		}
		group := fr.Description
		if _, err := r.opts.Firewall.Extend(func(x firewall.Rule) bool { return x.Description == group }, base.Expires); err != nil {
			base.Outcome, base.Detail, base.Expires = Failed, err.Error(), time.Time{}
		}
		return r.recordLocked(base)
	}
	if !r.take(ActFilter, base.Time) {
		base.Outcome, base.Detail, base.Expires = RateLimited, fmt.Sprintf("more than %g new filters per second", r.buckets[ActFilter].max), time.Time{}
		return r.recordLocked(base)
	}
	// Who passes: verified clients, then every allowlisted address of the
	// destination's family (own addresses, gateways, peers, allowlist).
	pass := map[netip.Prefix]bool{}
	for _, v := range a.Subject.Verified {
		if ip, err := netip.ParseAddr(v); err == nil && ip.Unmap().Is4() == dst.Is4() {
			ip = ip.Unmap()
			pass[netip.PrefixFrom(ip, ip.BitLen())] = true
		}
	}
	nVerified := len(pass)
	for _, p := range r.allowPrefixes(base.Time) {
		if p.Addr().Is4() == dst.Is4() {
			pass[p] = true
		}
	}
	const maxPass = 4096
	var ops []firewall.Op
	for p := range pass {
		if len(ops) == maxPass {
			break
		}
		pr := sig
		pr.Src, pr.Action, pr.TCPFlags = prefixText(p), firewall.ActionPass, ""
		ops = append(ops, firewall.Op{Op: "append", Rule: pr})
	}
	ops = append(ops, firewall.Op{Op: "append", Rule: sig})
	base.Outcome = Applied
	base.Detail = fmt.Sprintf("drop %s for %s; passing %d verified clients and %d allowlisted prefixes", base.Target, rule.duration, nVerified, len(ops)-1-nVerified)
	if mode == Observe {
		base.Outcome, base.Detail = Observed, "would "+base.Detail
		return r.recordLocked(base)
	}
	r.durations[sig.Description] = rule.duration
	if err := r.opts.Firewall.Apply(ops); err != nil {
		base.Outcome, base.Detail, base.Expires = Failed, err.Error(), time.Time{}
	}
	return r.recordLocked(base)
}

func describeSig(fr firewall.Rule) string {
	s := fr.Proto
	if fr.TCPFlags != "" {
		s += " " + fr.TCPFlags
	}
	if fr.Sport != "" {
		s += " from port " + fr.Sport
	}
	s += " to " + fr.Dst
	if fr.Dport != "" {
		s += " port " + fr.Dport
	}
	return s
}

// allowPrefixes lists everything the allowlist protects, as prefixes.
func (r *Responder) allowPrefixes(now time.Time) []netip.Prefix {
	r.allowlisted(netip.PrefixFrom(netip.IPv4Unspecified(), 32), now) // refreshes own
	out := append(append([]netip.Prefix(nil), r.own...), r.allow...)
	for a := range r.peers {
		out = append(out, netip.PrefixFrom(a, a.BitLen()))
	}
	return out
}

// Recheck extends the mitigations that still drop at least KeepPPS
// packets/s and near their expiry (less than half their duration left), so
// a block lasts while the attack does and ends soon after it stops.
func (r *Responder) Recheck(now time.Time) {
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.opts.Firewall == nil || r.mode != Enforce {
		return
	}
	rules, err := r.opts.Firewall.Rules()
	if err != nil {
		return
	}
	dt := now.Sub(r.seenAt).Seconds()
	first := r.seenAt.IsZero()
	r.seenAt = now
	rate := map[string]float64{} // group -> packets/s dropped
	seen := map[string]uint64{}
	for _, fr := range rules {
		if !ours(fr) || fr.Action == firewall.ActionPass {
			continue
		}
		k := fr.Description + "|" + fr.Src + "|" + signature(fr)
		seen[k] = fr.Packets
		if prev, ok := r.seen[k]; ok && !first && dt > 0 && fr.Packets >= prev {
			rate[fr.Description] += float64(fr.Packets-prev) / dt
		}
	}
	r.seen = seen
	groups := map[string]time.Time{} // group -> earliest expiry
	for _, fr := range rules {
		if ours(fr) && !fr.Expires.IsZero() {
			if e, ok := groups[fr.Description]; !ok || fr.Expires.Before(e) {
				groups[fr.Description] = fr.Expires
			}
		}
	}
	for g, exp := range groups {
		d := r.durations[g]
		if d == 0 {
			d = 10 * time.Minute
			if len(r.rules) > 0 {
				d = r.rules[0].duration
			}
		}
		if rate[g] < r.opts.Policy.KeepPPS || exp.Sub(now) > d/2 {
			continue
		}
		dec := Decision{Time: now, Action: "recheck", Target: g, Mode: r.mode, Outcome: Extended, Expires: now.Add(d),
			Detail: fmt.Sprintf("still dropping %.0f packets/s (>= %g)", rate[g], r.opts.Policy.KeepPPS)}
		if _, err := r.opts.Firewall.Extend(func(x firewall.Rule) bool { return x.Description == g }, now.Add(d)); err != nil {
			dec.Outcome, dec.Detail = Failed, err.Error()
		}
		r.recordLocked(dec)
	}
}

// Run re-checks the mitigations every interval until ctx ends.
func (r *Responder) Run(ctx context.Context, every time.Duration) {
	t := time.NewTicker(every)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case now := <-t.C:
			r.Recheck(now)
		}
	}
}
