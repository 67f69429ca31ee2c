package pqtls

import (
	"crypto/tls"
	"fmt"
	"slices"
)

// Policy is a site's effective key-exchange policy: a preset, possibly with
// an explicit group list in place of the preset's.
type Policy struct {
	Preset
	// Explicit is true when Groups came from the config, not the preset.
	Explicit bool
}

// NewPolicy builds a policy from config values: a preset name ("" for the
// default), an optional explicit list of IANA group names, whether a list
// without post-quantum groups is allowed, and a minimum version ("", "1.2"
// or "1.3").
func NewPolicy(preset string, groups []string, allowClassicalOnly bool, minVersion string) (Policy, error) {
	if preset == "" {
		preset = DefaultPreset
	}
	p, err := LookupPreset(preset)
	if err != nil {
		return Policy{}, err
	}
	pol := Policy{Preset: p}
	if len(groups) > 0 {
		ids := make([]tls.CurveID, 0, len(groups))
		for _, name := range groups {
			id, err := ParseServableGroup(name)
			if err != nil {
				return Policy{}, err
			}
			if p.RequirePQ && !IsPostQuantumGroup(id) {
				return Policy{}, fmt.Errorf("policy %q allows only post-quantum groups, but groups lists %q", preset, name)
			}
			ids = append(ids, id)
		}
		if !slices.ContainsFunc(ids, IsPostQuantumGroup) && !allowClassicalOnly {
			return Policy{}, fmt.Errorf("groups has no post-quantum group; set allow_classical_only to accept that")
		}
		pol.Groups, pol.Explicit = ids, true
	}
	switch minVersion {
	case "":
	case "1.2":
		if p.MinVersion > tls.VersionTLS12 {
			return Policy{}, fmt.Errorf("min_version 1.2 conflicts with policy %q", preset)
		}
		pol.MinVersion = tls.VersionTLS12
	case "1.3":
		pol.MinVersion = tls.VersionTLS13
	default:
		return Policy{}, fmt.Errorf("unknown TLS version %q", minVersion)
	}
	return pol, nil
}

// Apply sets the key-exchange settings of c.
func (p Policy) Apply(c *tls.Config) {
	c.CurvePreferences = slices.Clone(p.Groups)
	c.MinVersion = p.MinVersion
}

// GroupNames lists the policy's groups by IANA name.
func (p Policy) GroupNames() []string {
	names := make([]string, len(p.Groups))
	for i, g := range p.Groups {
		names[i] = GroupName(g)
	}
	return names
}
