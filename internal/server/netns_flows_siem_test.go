package server_test

import (
	"bufio"
	"bytes"
	"encoding/json"
	"net/netip"
	"os"
	"path/filepath"
	"strconv"
	"testing"
	"time"

	"github.com/isolationhq/terraform-provider-isolation/internal/apiv1"
	"github.com/isolationhq/terraform-provider-isolation/internal/client"
	"github.com/isolationhq/terraform-provider-isolation/internal/enforce/netns/netnstest"
	"github.com/isolationhq/terraform-provider-isolation/internal/server"
	"github.com/isolationhq/terraform-provider-isolation/internal/siem"
)

// The flow records the netns driver keeps reach a SIEM sink that asks for
// flows, as OCSF Network Activity, each with its record's id.
func TestNetnsAPI_FlowRecordsReachASIEMSinkAsOCSFNetworkActivity(t *testing.T) {
	out := filepath.Join(t.TempDir(), "flows.ocsf")
	sink, err := siem.ParseSink("file://" + out + "?format=ocsf&events=flows")
	if err != nil {
		t.Fatal(err)
	}
	l := startFlowLab(t, func(cfg *server.Config) { cfg.SIEM = []siem.Sink{sink} })
	a := l.ends(l.a)[0]
	inet := netnstest.Endpoint{Namespace: l.cfg.NetnsPrefix + "-internet", Addr: netip.MustParseAddr("198.19.0.10")}
	netnstest.SendUDP(t, a, inet, 4000, 3)
	recs := waitFor(t, "the denied udp record", func() []apiv1.Flow {
		return l.envFlows(t, client.FlowListOptions{Verdict: apiv1.VerdictDenied})
	}, func(fs []apiv1.Flow) bool { return len(fs) > 0 })

	type endpoint struct {
		IP   string `json:"ip"`
		Port int    `json:"port"`
	}
	var got struct {
		ClassUID int `json:"class_uid"`
		Metadata struct {
			UID string `json:"uid"`
		} `json:"metadata"`
		DstEndpoint endpoint `json:"dst_endpoint"`
		SrcEndpoint endpoint `json:"src_endpoint"`
	}
	deadline := time.Now().Add(15 * time.Second)
	for {
		b, err := os.ReadFile(out)
		if err != nil && !os.IsNotExist(err) {
			t.Fatal(err)
		}
		found := false
		for sc := bufio.NewScanner(bytes.NewReader(b)); sc.Scan(); {
			if err := json.Unmarshal(sc.Bytes(), &got); err != nil {
				t.Fatalf("line %q: %v", sc.Text(), err)
			}
			if got.DstEndpoint.IP == inet.Addr.String() && got.DstEndpoint.Port == 4000 {
				found = true
				break
			}
		}
		if found {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("no OCSF record of the denied udp flow in the sink after 15 s; it holds:\n%s", b)
		}
		time.Sleep(100 * time.Millisecond) // polling a file the exporter appends to, bounded by the deadline
	}
	if got.ClassUID != 4001 || got.SrcEndpoint.IP != a.Addr.String() || got.Metadata.UID != "flow-"+strconv.FormatInt(recs[0].ID, 10) {
		t.Fatalf("OCSF record %+v, want Network Activity (4001) from %s with uid flow-%d", got, a.Addr, recs[0].ID)
	}
}
