// Package anycast announces pqedge's service addresses to the network
// through BIRD, and withdraws them when pqedge cannot serve.
//
// An anycast node announces the same /32 (or /128) as its siblings; routers
// send each client to the nearest node that announces it. pqedge does not
// speak BGP or OSPF itself: it owns a network device, and BIRD's `protocol
// direct` turns every address on that device into a route that BIRD exports
// to its peers. Adding an address to the device announces the prefix;
// removing it withdraws the prefix.
//
// # The device is a dead-man switch
//
// [OpenDevice] creates a non-persistent TUN device (default name
// pqedge-any0) whose only reference is a file descriptor held by the pqedge
// process. When the process exits for any reason, kill -9 and panics
// included, the kernel closes the descriptor and deletes the device with
// every address on it, and BIRD withdraws the routes at once. No watchdog or
// cleanup script is involved, so a dead node cannot keep attracting traffic.
// (Dummy interfaces would do the same job with a cleanup step, but they
// outlive the process, and the kernels of these machines lack them.)
//
// # The service address lives on lo
//
// The address copy on the device is only the announcement. The service
// address itself must also be on the loopback interface, so the kernel
// keeps accepting packets for it after a withdrawal: established connections
// finish and the last packets routed here during BGP convergence still land.
// [Device.EnsureLoopback] adds it to lo when it is missing and never removes
// it. pqedge does this itself rather than leaving it to the operator because
// it typically runs from a scratch image with no `ip` command, and because lo
// is where the address must stay across pqedge restarts: an address that
// vanished with the process would cut the connections other processes (or
// the next pqedge) still serve. An operator who manages lo already (netplan,
// systemd-networkd, a container entrypoint) loses nothing: the call only
// adds a missing address.
//
// Listeners bind the service address with [FreeBind], so they can start
// before the address exists and pqedge can become ready before it announces.
//
// # Flap control
//
// A [Controller] turns health reports into announcements, one state machine
// per prefix, with rise and fall counts and a hold-down after each
// withdrawal (see [Policy]). It knows nothing about listeners or pools: the
// server tells it, per prefix, whether it is healthy and why, and the
// Controller reports each announce and withdraw through a callback.
//
// This package does not decide what healthy means, serve /readyz, or order
// the lame-duck shutdown: the server does, calling [Controller.Update] and
// [Controller.WithdrawAll].
package anycast
