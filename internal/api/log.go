package api

import (
	"log"
	"log/slog"
)

// slogStdLogger routes net/http's own messages (TLS handshakes, bad
// requests) to the server's log at warning level.
func slogStdLogger(l *slog.Logger) *log.Logger {
	return slog.NewLogLogger(l.Handler(), slog.LevelWarn)
}
