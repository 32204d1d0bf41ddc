package netns

// EncodeRecord lets tests write a record as an older driver did.
var EncodeRecord = encodeRecord

// WithHostNAT makes cfg's netns:NAME uplink treat NAME as the host: the
// driver makes there what --uplink host makes in the host's namespace.
func WithHostNAT(cfg Config) Config {
	cfg.hostNAT = true
	return cfg
}

// HostTable is the name of that table.
func HostTable(prefix string) string { return names{prefix: prefix}.hostTable() }

// InetRuleCounts is the router's inet table's rule count per chain, from
// the kernel's dump.
func (d *Driver) InetRuleCounts() (map[string]int, error) {
	d.mu.RLock()
	defer d.mu.RUnlock()
	return d.inetRuleCounts(d.router)
}
