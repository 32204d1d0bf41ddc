package provider

import (
	"context"

	"github.com/hashicorp/terraform-plugin-log/tflog"
)

// logSubsystem names the client's logs in TF_LOG output.
const logSubsystem = "isolation_client"

// maskSecret makes tflog replace the secret wherever it would appear in a
// message or field of the provider's logs, a second line of defence behind
// the client, which never logs it.
func maskSecret(ctx context.Context, secret string) context.Context {
	if secret == "" {
		return ctx
	}
	ctx = tflog.MaskMessageStrings(ctx, secret)
	ctx = tflog.MaskAllFieldValuesStrings(ctx, secret)
	ctx = tflog.NewSubsystem(ctx, logSubsystem)
	ctx = tflog.SubsystemMaskMessageStrings(ctx, logSubsystem, secret)
	ctx = tflog.SubsystemMaskAllFieldValuesStrings(ctx, logSubsystem, secret)
	return ctx
}

// tflogAdapter turns client.Logger calls into tflog entries of the client
// subsystem. The client has no context per log line, so the adapter keeps
// the one Configure ran with, which carries tflog's sinks and masks.
type tflogAdapter struct{ ctx context.Context }

func (a tflogAdapter) Debug(msg string, kv ...any) {
	tflog.SubsystemDebug(a.ctx, logSubsystem, msg, fields(kv))
}

func (a tflogAdapter) Info(msg string, kv ...any) {
	tflog.SubsystemInfo(a.ctx, logSubsystem, msg, fields(kv))
}

func (a tflogAdapter) Warn(msg string, kv ...any) {
	tflog.SubsystemWarn(a.ctx, logSubsystem, msg, fields(kv))
}

func (a tflogAdapter) Error(msg string, kv ...any) {
	tflog.SubsystemError(a.ctx, logSubsystem, msg, fields(kv))
}

// fields turns key/value pairs into tflog's map; a dangling key gets no value.
func fields(kv []any) map[string]any {
	m := make(map[string]any, len(kv)/2)
	for i := 0; i < len(kv); i += 2 {
		key, ok := kv[i].(string)
		if !ok {
			continue
		}
		if i+1 < len(kv) {
			m[key] = kv[i+1]
		} else {
			m[key] = nil
		}
	}
	return m
}
