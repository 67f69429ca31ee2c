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

// PolicyProblem is one thing wrong with policy settings, with the setting it
// is about, so a config loader can point at the right key.
type PolicyProblem struct {
	Field string // "policy", "groups", "allow_classical_only" or "min_version"
	Msg   string
	Hint  string // what to change; may be empty
}

func (p PolicyProblem) Error() string {
	if p.Hint == "" {
		return p.Field + ": " + p.Msg
	}
	return p.Field + ": " + p.Msg + " (" + p.Hint + ")"
}

// NewPolicy builds a policy from config values: a preset name ("" for the
// default), an optional explicit list of IANA group names, whether a list
// without post-quantum groups is allowed, and a minimum version ("", "1.2"
// or "1.3"). It is CheckPolicy with the first problem as the error.
func NewPolicy(preset string, groups []string, allowClassicalOnly bool, minVersion string) (Policy, error) {
	pol, problems := CheckPolicy(preset, groups, allowClassicalOnly, minVersion)
	if len(problems) > 0 {
		return Policy{}, problems[0]
	}
	return pol, nil
}

// CheckPolicy builds a policy like NewPolicy and returns every problem of
// the settings, not only the first. It is the one place the rules live.
func CheckPolicy(preset string, groups []string, allowClassicalOnly bool, minVersion string) (Policy, []PolicyProblem) {
	var problems []PolicyProblem
	add := func(field, hint, format string, args ...any) {
		problems = append(problems, PolicyProblem{Field: field, Msg: fmt.Sprintf(format, args...), Hint: hint})
	}
	if preset == "" {
		preset = DefaultPreset
	}
	p, err := LookupPreset(preset)
	if err != nil {
		add("policy", "", "%v", err)
	}
	pol := Policy{Preset: p}
	if len(groups) > 0 {
		ids := make([]tls.CurveID, 0, len(groups))
		for _, name := range groups {
			id, err := ParseServableGroup(name)
			if err != nil {
				add("groups", "", "%v", err)
				continue
			}
			if p.RequirePQ && !IsPostQuantumGroup(id) {
				add("groups", "remove it, or use policy = \"pq-preferred\"", "policy %q allows only post-quantum groups, but groups lists %q", preset, name)
			}
			ids = append(ids, id)
		}
		anyPQ := slices.ContainsFunc(ids, IsPostQuantumGroup)
		if !anyPQ && len(ids) == len(groups) && !allowClassicalOnly {
			// Losing post-quantum protection silently is the mistake
			// operators make most with other proxies.
			add("groups", "add X25519MLKEM768, or set allow_classical_only = true if you really mean it",
				"groups has no post-quantum group: connections would lose protection against harvest-now-decrypt-later")
		}
		if allowClassicalOnly && anyPQ {
			add("allow_classical_only", "remove it: it only applies to a groups list without post-quantum groups", "allow_classical_only has no effect here")
		}
		pol.Groups, pol.Explicit = ids, true
	} else if allowClassicalOnly {
		add("allow_classical_only", "remove it: it only applies to a groups list without post-quantum groups", "allow_classical_only has no effect here")
	}
	switch minVersion {
	case "":
	case "1.2":
		if p.MinVersion > tls.VersionTLS12 {
			add("min_version", "pq-only needs TLS 1.3: hybrid key exchange does not exist in TLS 1.2", "min_version 1.2 conflicts with policy %q", preset)
		}
		pol.MinVersion = tls.VersionTLS12
	case "1.3":
		pol.MinVersion = tls.VersionTLS13
	default:
		add("min_version", "use \"1.2\" or \"1.3\"", "unknown TLS version %q", minVersion)
	}
	if len(problems) > 0 {
		return Policy{}, problems
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

// Permits says why a completed handshake does not meet the policy (nil when
// it does): a version below the policy's minimum, or a key-exchange group
// outside its groups. A handshake without a group of its own (a resumed
// TLS 1.2 session) meets only a policy that does not require post-quantum
// key exchange.
func (p Policy) Permits(h *Handshake) error {
	if p.MinVersion != 0 && h.Version < p.MinVersion {
		return fmt.Errorf("%s is below the policy's minimum %s", VersionName(h.Version), VersionName(p.MinVersion))
	}
	if h.Group == 0 {
		if p.RequirePQ {
			return fmt.Errorf("policy %q requires post-quantum key exchange; this session had none of its own", p.Name)
		}
		return nil
	}
	if !slices.Contains(p.Groups, h.Group) {
		return fmt.Errorf("group %s is not in policy %q (%v)", GroupName(h.Group), p.Name, p.GroupNames())
	}
	return nil
}
