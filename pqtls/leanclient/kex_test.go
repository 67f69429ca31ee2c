package leanclient

import (
	"fmt"
	"strings"
	"testing"

	"github.com/pqedge/pqedge/pqtls"
)

// TestKeyShareSizes: every group the client can offer sends a share of the
// size pqtls' table gives, and accepts from the server only a share of
// exactly the table's server size.
func TestKeyShareSizes(t *testing.T) {
	for _, g := range SupportedGroups() {
		info, ok := pqtls.LookupGroup(g)
		if !ok {
			t.Fatalf("%s is not in pqtls' group table", pqtls.GroupName(g))
		}
		t.Run(info.Name, func(t *testing.T) {
			ks, err := newKeyShare(g)
			if err != nil {
				t.Fatal(err)
			}
			if len(ks.share) != info.ClientShare {
				t.Errorf("client share is %d bytes, table says %d", len(ks.share), info.ClientShare)
			}
			for _, n := range []int{0, 1, info.ServerShare - 1, info.ServerShare + 1, 2 * info.ServerShare} {
				_, err := ks.sharedSecret(make([]byte, n))
				if err == nil || !strings.Contains(err.Error(), fmt.Sprintf("want %d", info.ServerShare)) {
					t.Errorf("server share of %d bytes: err = %v, want a size error naming %d", n, err, info.ServerShare)
				}
			}
		})
	}
}
