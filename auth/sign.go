package auth

import (
	"fmt"
	"time"

	"github.com/golang-jwt/jwt/v5"

	"github.com/switchboard-rt/switchboard/protocol"
)

// Sign returns an HS256 token for c signed with secret, as `switchboard
// token` prints it. The token carries sub, iat (now), exp if c.Expires is
// not zero (rounded down to the second), and rooms and publish if
// restricted (HasRooms or a non-empty Rooms, likewise for Publish), so that
// Verify returns claims that allow what c allows. It fails without a secret
// (ErrNoKey), for an invalid c.User, and for an invalid pattern.
func Sign(secret []byte, c Claims) (string, error) {
	if len(secret) == 0 {
		return "", fmt.Errorf("%w: Sign needs a secret", ErrNoKey)
	}
	if !protocol.ValidUser(c.User) {
		return "", fmt.Errorf("auth: sign: user %q is not a valid user id (1-%d printable characters without spaces or braces)", c.User, protocol.MaxUserLen)
	}
	mc := jwt.MapClaims{
		"sub": c.User,
		"iat": time.Now().Unix(),
	}
	if !c.Expires.IsZero() {
		mc["exp"] = c.Expires.Unix()
	}
	if c.HasRooms || len(c.Rooms) > 0 {
		rooms, err := signPatterns("rooms", c.Rooms)
		if err != nil {
			return "", err
		}
		mc["rooms"] = rooms
	}
	if c.HasPublish || len(c.Publish) > 0 {
		publish, err := signPatterns("publish", c.Publish)
		if err != nil {
			return "", err
		}
		mc["publish"] = publish
	}
	token, err := jwt.NewWithClaims(jwt.SigningMethodHS256, mc).SignedString(secret)
	if err != nil {
		return "", fmt.Errorf("auth: sign: %w", err)
	}
	return token, nil
}

// signPatterns validates patterns and returns them as a non-nil slice, so
// that an empty list is encoded as [] (nothing allowed), never null.
func signPatterns(name string, patterns []string) ([]string, error) {
	for i, p := range patterns {
		if err := ValidPattern(p); err != nil {
			return nil, fmt.Errorf("sign: %s[%d] %q: %w", name, i, p, err)
		}
	}
	if patterns == nil {
		return []string{}, nil
	}
	return patterns, nil
}
