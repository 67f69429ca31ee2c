package bench

import "golang.org/x/sys/unix"

// harnessPolicy is this process's scheduling policy (sched(7)), -1 when
// it cannot be read.
func harnessPolicy() int {
	if attr, err := unix.SchedGetAttr(0, 0); err == nil {
		return int(attr.Policy)
	}
	return -1
}

// floodPriority is the command prefix the flood's child runs under:
// below everything the measurement needs on the clients' core (the
// keep-alive client, the upstream), above as much else as it can be
// (floodPriorityFor the harness's policy).
func floodPriority() []string { return floodPriorityFor(harnessPolicy()) }

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

// frontPolicy says what a front under overload runs as: in the normal
// class (SCHED_OTHER) at nice when normal is set, otherwise as it was
// started (frontPolicyFor the harness's policy).
func frontPolicy() (normal bool, nice int) { return frontPolicyFor(harnessPolicy()) }

// frontPolicyFor is frontPolicy's choice for the harness's scheduling
// policy (-1: unknown).
//
// Under a real-time harness the front leaves the real-time class it
// inherited, for SCHED_OTHER at nice -10 (ahead of ordinary processes on
// its core), as an edge proxy runs in production. A front saturated by
// the flood in SCHED_RR measures the real-time class, not the front:
// `perf sched timehist` over a flooded phase showed
//
//   - the Go runtime's thread waiting in epoll for the front's network
//     events held off up to 29 ms by a sibling thread of the same
//     real-time priority on the same CPU, which it cannot preempt
//     (SCHED_RR threads of equal priority give way only when they block
//     or after a 100 ms quantum);
//   - ksoftirqd/0, which carries the loopback packets the front's
//     softirqs could not finish, waiting up to 30 ms behind the front;
//   - and a front above 95% of its CPU would be stopped for the rest of
//     each second by the kernel's real-time throttle
//     (sched_rt_runtime_us, 950 ms per 1 s by default).
//
// The clients and the upstream stay in the real-time class, so that they
// measure without the noise of the machine's other processes.
func frontPolicyFor(policy int) (normal bool, nice int) {
	if policy == unix.SCHED_FIFO || policy == unix.SCHED_RR {
		return true, -10
	}
	return false, 0
}
