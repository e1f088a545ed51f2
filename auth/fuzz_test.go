package auth

import (
	"crypto"
	"crypto/hmac"
	"crypto/rsa"
	"crypto/sha256"
	"crypto/sha512"
	"encoding/base64"
	"encoding/json"
	"errors"
	"hash"
	"strings"
	"testing"
	"time"
)

// Signature modes of FuzzVerify.
const (
	sigHS256      = iota // HMAC-SHA256 with the right secret
	sigWrongKey          // HMAC-SHA256 with another secret
	sigNone              // no signature at all
	sigRaw               // the fuzzer's bytes
	sigPublicHMAC        // HMAC keyed with the RSA public key's PEM: the HS/RS confusion attack
	sigRS256             // RS256 with the right private key
	sigModes
)

// FuzzVerify builds tokens from a fuzzed header, claims and signature and
// checks that Verify never panics, that every refusal wraps ErrInvalidToken
// without quoting the token, and above all that an accepted token really is
// signed: its alg is one the verifier holds a key for and its signature
// checks out with that key, recomputed here independently of the jwt
// library. Unsigned (alg none), wrongly signed and HS/RS-swapped tokens must
// all be refused. Accepted claims must be sane: a valid sub, an exp in the
// future (within leeway).
func FuzzVerify(f *testing.F) {
	hs := `{"alg":"HS256","typ":"JWT"}`
	rs := `{"alg":"RS256","typ":"JWT"}`
	ok := `{"sub":"alice","exp":1772370000,"rooms":["chat:*"]}` // testNow + 1h
	for _, s := range []struct {
		header, claims string
		mode           uint8
	}{
		{hs, ok, sigHS256},
		{hs, ok, sigWrongKey},
		{`{"alg":"none"}`, ok, sigNone},
		{`{"alg":"NONE","typ":"JWT"}`, ok, sigNone},
		{hs, ok, sigPublicHMAC},
		{rs, ok, sigRS256},
		{rs, ok, sigHS256},
		{hs, ok, sigRS256},
		{hs, `{"sub":"alice","exp":1}`, sigHS256},
		{hs, `{"sub":"","exp":1772370000}`, sigHS256},
		{hs, `{"sub":"a b","exp":1772370000}`, sigHS256},
		{hs, `{"sub":"alice","exp":"soon"}`, sigHS256},
		{hs, `{"sub":"alice","exp":1772370000,"rooms":null}`, sigHS256},
		{hs, `{"sub":"alice","exp":1772370000,"rooms":["@bob"]}`, sigHS256},
		{hs, `{"sub":"alice","exp":1772370000,"publish":[1]}`, sigHS256},
		{hs, `{"sub":"alice","exp":1772370000,"nbf":1772400000}`, sigHS256},
		{hs, `[]`, sigHS256},
		{`{"alg":"HS256","crit":["x"]}`, ok, sigHS256},
		{`not json`, ok, sigRaw},
	} {
		f.Add(s.header, s.claims, s.mode, []byte("sig"))
	}
	k := testKeys()
	pub := publicPEM(f, &k.rsa.PublicKey)
	v, err := NewVerifier(VerifierConfig{Secret: testSecret, PublicKeyPEM: pub, RequireExp: true,
		Now: func() time.Time { return testNow }})
	if err != nil {
		f.Fatal(err)
	}

	build := func(t testing.TB, header, claims string, mode uint8, raw []byte) string {
		enc := base64.RawURLEncoding
		input := enc.EncodeToString([]byte(header)) + "." + enc.EncodeToString([]byte(claims))
		var sig []byte
		switch mode % sigModes {
		case sigHS256:
			sig = hmacSum(sha256.New, testSecret, input)
		case sigWrongKey:
			sig = hmacSum(sha256.New, []byte("another secret of 32 bytes......"), input)
		case sigNone:
		case sigRaw:
			sig = raw
		case sigPublicHMAC:
			sig = hmacSum(sha256.New, pub, input)
		case sigRS256:
			d := sha256.Sum256([]byte(input))
			if sig, err = rsa.SignPKCS1v15(nil, k.rsa, crypto.SHA256, d[:]); err != nil {
				t.Fatal(err)
			}
		}
		return input + "." + enc.EncodeToString(sig)
	}
	// The harness can build tokens Verify accepts, so the properties below
	// are not checked on refusals alone.
	for _, mode := range []uint8{sigHS256, sigRS256} {
		header := hs
		if mode == sigRS256 {
			header = rs
		}
		if _, err := v.Verify(build(f, header, ok, mode, nil)); err != nil {
			f.Fatalf("a well-signed seed (mode %d) is refused: %v", mode, err)
		}
	}
	f.Fuzz(func(t *testing.T, header, claims string, mode uint8, raw []byte) {
		checkVerified(t, v, build(t, header, claims, mode, raw), pub)
	})
}

// FuzzVerifyString hands Verify arbitrary strings: it must refuse them
// (or accept only what checkVerified proves signed), never panic.
func FuzzVerifyString(f *testing.F) {
	for _, s := range []string{"", ".", "..", "a.b.c", "eyJhbGciOiJub25lIn0.eyJzdWIiOiJhIn0.",
		"eyJhbGciOiJIUzI1NiJ9.e30.AAAA", strings.Repeat("A", 5000) + ".." + "x", "\xff.\xfe.\xfd"} {
		f.Add(s)
	}
	k := testKeys()
	pub := publicPEM(f, &k.rsa.PublicKey)
	v, err := NewVerifier(VerifierConfig{Secret: testSecret, PublicKeyPEM: pub, RequireExp: true,
		Now: func() time.Time { return testNow }})
	if err != nil {
		f.Fatal(err)
	}
	f.Fuzz(func(t *testing.T, token string) {
		checkVerified(t, v, token, pub)
	})
}

func hmacSum(h func() hash.Hash, key []byte, input string) []byte {
	m := hmac.New(h, key)
	m.Write([]byte(input))
	return m.Sum(nil)
}

// checkVerified verifies token with v (HS* with testSecret, RS* with
// testKeys().rsa) and checks the answer's properties.
func checkVerified(t *testing.T, v *Verifier, token string, pub []byte) {
	c, err := v.Verify(token)
	if err != nil {
		if !errors.Is(err, ErrInvalidToken) {
			t.Fatalf("Verify error %v does not wrap ErrInvalidToken", err)
		}
		for _, part := range strings.Split(token, ".") {
			if len(part) >= 8 && strings.Contains(err.Error(), part) {
				t.Fatalf("Verify error %q quotes the token", err)
			}
		}
		return
	}
	parts := strings.Split(token, ".")
	if len(parts) != 3 {
		t.Fatalf("accepted a token of %d parts: %q", len(parts), token)
	}
	hb, err1 := base64.RawURLEncoding.DecodeString(parts[0])
	sig, err2 := base64.RawURLEncoding.DecodeString(parts[2])
	if err1 != nil || err2 != nil {
		t.Fatalf("accepted a token that is not base64url: %q", token)
	}
	var h struct {
		Alg string `json:"alg"`
	}
	if json.Unmarshal(hb, &h) != nil {
		t.Fatalf("accepted a token whose header is not JSON: %q", hb)
	}
	input := parts[0] + "." + parts[1]
	signed := false
	switch h.Alg {
	case "HS256":
		signed = hmac.Equal(sig, hmacSum(sha256.New, testSecret, input))
	case "HS384":
		signed = hmac.Equal(sig, hmacSum(sha512.New384, testSecret, input))
	case "HS512":
		signed = hmac.Equal(sig, hmacSum(sha512.New, testSecret, input))
	case "RS256":
		d := sha256.Sum256([]byte(input))
		signed = rsa.VerifyPKCS1v15(&testKeys().rsa.PublicKey, crypto.SHA256, d[:], sig) == nil
	}
	if !signed {
		t.Fatalf("accepted token with alg %q that is not signed by the configured key: %q", h.Alg, token)
	}
	if hmac.Equal(sig, hmacSum(sha256.New, pub, input)) {
		t.Fatalf("accepted a token signed with the public key as an HMAC secret: %q", token)
	}
	if c.User == "" || c.Expires.IsZero() || !c.Expires.After(testNow.Add(-DefaultLeeway)) {
		t.Fatalf("accepted claims %+v: want a sub and an exp after now - leeway", c)
	}
	for _, p := range append(append([]string{}, c.Rooms...), c.Publish...) {
		if ValidPattern(p) != nil {
			t.Fatalf("accepted claims carry a bad pattern %q", p)
		}
	}
	if c.CanJoin("@not-" + c.User) {
		t.Fatalf("claims %+v may join another user's inbox", c)
	}
}
