package anycast_test

import (
	"fmt"
	"net/netip"
	"time"

	"github.com/pqedge/pqedge/internal/anycast"
)

// printer stands in for an *anycast.Device, which needs CAP_NET_ADMIN.
type printer struct{}

func (printer) Announce(p netip.Prefix) error {
	fmt.Println("add", p, "to pqedge-any0")
	return nil
}

func (printer) Withdraw(p netip.Prefix) error {
	fmt.Println("remove", p, "from pqedge-any0")
	return nil
}

// The server's side of anycast: configure the prefixes of a config
// generation, report health as it changes, and withdraw everything first
// on SIGTERM.
func ExampleController() {
	dot := netip.MustParsePrefix("192.0.2.53/32")
	c := anycast.NewController(printer{}, anycast.Options{
		OnTransition: func(t anycast.Transition) {
			fmt.Printf("transition: %s announced=%v cause=%s reason=%q\n", t.Prefix, t.Announced, t.Cause, t.Reason)
		},
	})
	defer c.Close()
	policy := anycast.Policy{Rise: 3, Fall: 1, Interval: time.Second, HoldDown: 10 * time.Second}
	if err := c.Configure([]anycast.Announcement{{Prefix: dot, Policy: policy}}); err != nil {
		fmt.Println(err)
		return
	}
	c.Update(dot, true, `listener "dot" ready`)
	c.Update(dot, false, `listener "dot": pool "resolvers" has no healthy upstream`)
	c.Update(dot, true, `listener "dot" ready`) // re-announced after rise and hold-down
	c.WithdrawAll("SIGTERM")
	// Output:
	// add 192.0.2.53/32 to pqedge-any0
	// transition: 192.0.2.53/32 announced=true cause=healthy reason="listener \"dot\" ready"
	// remove 192.0.2.53/32 from pqedge-any0
	// transition: 192.0.2.53/32 announced=false cause=unhealthy reason="listener \"dot\": pool \"resolvers\" has no healthy upstream"
}
