package api

import (
	"crypto/sha256"
	"crypto/subtle"
	"net/http"
	"strings"

	"github.com/switchboard-rt/switchboard/protocol"
)

// authorize checks r's API key (PROTOCOL.md, "Auth"):
//
//   - no key configured and not in dev mode: the API is disabled, 403;
//   - no key configured in dev mode: anyone may call;
//   - otherwise r must carry "Authorization: Bearer <key>": a missing or
//     malformed header and a wrong key both get 401, as presenting the
//     right key is what fixes either.
//
// The key is compared through SHA-256 digests with subtle.ConstantTimeCompare,
// so neither its bytes nor its length leak through timing.
func (s *Server) authorize(r *http.Request) error {
	if s.keyHash == nil {
		if s.cfg.Dev {
			return nil
		}
		return errorf(protocol.CodeForbidden, "the HTTP API is disabled: start the server with --api-key")
	}
	scheme, key, ok := strings.Cut(r.Header.Get("Authorization"), " ")
	key = strings.TrimSpace(key)
	if !ok || !strings.EqualFold(scheme, "Bearer") || key == "" {
		return errorf(protocol.CodeUnauthorized, "send the API key as Authorization: Bearer <api key>")
	}
	sum := sha256.Sum256([]byte(key))
	if subtle.ConstantTimeCompare(sum[:], s.keyHash) != 1 {
		return errorf(protocol.CodeUnauthorized, "invalid API key")
	}
	return nil
}
