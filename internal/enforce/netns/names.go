package netns

import (
	"crypto/sha256"
	"encoding/base32"
	"fmt"
	"regexp"
	"strings"
)

// Every kernel object the driver creates is named from one prefix, so that
// it can find its own objects after a crash and never touch anyone else's.
//
//	<prefix><short id>   an environment's namespace, and its veth in the router namespace
//	<prefix>router       the router namespace, which holds the bridge
//	<prefix>br           the bridge inside the router namespace
//	<prefix>brp(x)       a veth pair keeping the bridge up, in the router namespace
//	<prefix>             the router namespace's nftables tables (bridge and inet families)
//	<env name>_*         an environment's sets and chains in the inet one
//
// Interface names are limited to 15 bytes, which bounds the prefix.
const (
	shortIDLen     = 9
	maxPrefixLen   = 15 - shortIDLen
	envIfName      = "eth0"
	routerSuffix   = "router"
	bridgeSuffix   = "br"
	idAlphabet     = "abcdefghijklmnopqrstuvwxyz234567"
	defaultPrefix  = "iso"
	prefixSyntaxRE = `^[a-z][a-z0-9]{0,5}$`
)

var (
	prefixRE = regexp.MustCompile(prefixSyntaxRE)
	idCoding = base32.NewEncoding(idAlphabet).WithPadding(base32.NoPadding)
)

// names derives kernel object names from the driver's prefix.
type names struct{ prefix string }

func newNames(prefix string) (names, error) {
	if !prefixRE.MatchString(prefix) {
		return names{}, fmt.Errorf("netns: prefix %q must be 1-%d characters: a lowercase letter, then lowercase letters or digits", prefix, maxPrefixLen)
	}
	return names{prefix: prefix}, nil
}

// shortID is a fixed-length name-safe digest of an environment id: ids are
// the control plane's business (any length, any characters), interface
// names are not. 45 bits make a collision unlikely even among 10^5 environments.
func shortID(envID string) string {
	sum := sha256.Sum256([]byte(envID))
	return idCoding.EncodeToString(sum[:])[:shortIDLen]
}

// env is the namespace name of an environment, and the name of its veth
// end in the router namespace.
func (n names) env(envID string) string { return NamespaceName(n.prefix, envID) }

// NamespaceName is the name of the namespace a driver with prefix gives
// environment envID, as `ip netns list` shows it: for tools that look at
// an environment from outside the driver (the demo sends packets from it).
func NamespaceName(prefix, envID string) string { return prefix + shortID(envID) }

func (n names) router() string     { return n.prefix + routerSuffix }
func (n names) bridge() string     { return n.prefix + bridgeSuffix }
func (n names) bridgePort() string { return n.prefix + bridgeSuffix + "p" }
func (n names) table() string      { return n.prefix }

// isEnv reports whether name is shaped like an environment's namespace or
// veth name, so that Sync removes only objects this driver could have made.
func (n names) isEnv(name string) bool {
	rest, ok := strings.CutPrefix(name, n.prefix)
	if !ok || len(rest) != shortIDLen {
		return false
	}
	for _, c := range rest {
		if !strings.ContainsRune(idAlphabet, c) {
			return false
		}
	}
	return true
}
