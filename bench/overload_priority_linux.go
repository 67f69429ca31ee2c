package bench

import "golang.org/x/sys/unix"

// floodPriority is the command prefix the flood's child runs under:
// below everything the measurement needs on the clients' core (the
// keep-alive client, the upstream), above as much else as it can be. It
// reads this process's scheduling policy (sched(7)) and leaves the choice
// to floodPriorityFor.
func floodPriority() []string {
	policy := -1
	if attr, err := unix.SchedGetAttr(0, 0); err == nil {
		policy = int(attr.Policy)
	}
	return floodPriorityFor(policy)
}

// floodPriorityFor is floodPriority's choice for the harness's scheduling
// policy (-1: unknown).
//
// When the harness runs in a real-time class (chrt -r 10 pqedge bench
// overload ...), so do the fronts, the upstream and the keep-alive client
// it starts, which then preempt the flood at once. The flood leaves the
// real-time class, since a real-time flood would also starve the
// kernel's softirq threads that carry every loopback packet, and runs at
// nice -10, so that other processes on the machine cannot starve it: in
// SCHED_IDLE or at nice 19 the flood's client got a fifth of the rate
// asked while other engineers' builds ran on its core, its connections
// timing out half-open. Otherwise (no real-time harness) it runs in
// SCHED_IDLE, behind everything on its core.
func floodPriorityFor(policy int) []string {
	if policy == unix.SCHED_FIFO || policy == unix.SCHED_RR {
		return []string{"chrt", "--other", "0", "nice", "-n", "-10"}
	}
	return []string{"chrt", "--idle", "0"}
}
