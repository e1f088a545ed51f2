package auth

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/rsa"
	"crypto/x509"
	"encoding/base64"
	"encoding/pem"
	"errors"
	"reflect"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/golang-jwt/jwt/v5"
)

var (
	testSecret = []byte("0123456789abcdef0123456789abcdef")
	testNow    = time.Date(2026, 3, 1, 12, 0, 0, 0, time.UTC)
)

// testKeys are generated once: RSA key generation is slow under -race.
var testKeys = sync.OnceValue(func() (k struct {
	rsa, rsaOther *rsa.PrivateKey
	ec256, ec384  *ecdsa.PrivateKey
}) {
	var err error
	for _, key := range []**rsa.PrivateKey{&k.rsa, &k.rsaOther} {
		if *key, err = rsa.GenerateKey(rand.Reader, 2048); err != nil {
			panic(err)
		}
	}
	if k.ec256, err = ecdsa.GenerateKey(elliptic.P256(), rand.Reader); err != nil {
		panic(err)
	}
	if k.ec384, err = ecdsa.GenerateKey(elliptic.P384(), rand.Reader); err != nil {
		panic(err)
	}
	return k
})

// publicPEM encodes pub as a PKIX "PUBLIC KEY" PEM block.
func publicPEM(t *testing.T, pub any) []byte {
	t.Helper()
	der, err := x509.MarshalPKIXPublicKey(pub)
	if err != nil {
		t.Fatalf("MarshalPKIXPublicKey: %v", err)
	}
	return pem.EncodeToMemory(&pem.Block{Type: "PUBLIC KEY", Bytes: der})
}

// mint signs claims with method and key.
func mint(t *testing.T, method jwt.SigningMethod, key any, claims jwt.MapClaims) string {
	t.Helper()
	s, err := jwt.NewWithClaims(method, claims).SignedString(key)
	if err != nil {
		t.Fatalf("SignedString(%s): %v", method.Alg(), err)
	}
	return s
}

// withHeader returns a valid HS256 token whose header is replaced by header.
func withHeader(t *testing.T, header string) string {
	t.Helper()
	parts := strings.Split(mint(t, jwt.SigningMethodHS256, testSecret, valid(nil)), ".")
	return base64.RawURLEncoding.EncodeToString([]byte(header)) + "." + parts[1] + "." + parts[2]
}

// newVerifier builds a Verifier whose clock says testNow.
func newVerifier(t *testing.T, cfg VerifierConfig) *Verifier {
	t.Helper()
	cfg.Now = func() time.Time { return testNow }
	v, err := NewVerifier(cfg)
	if err != nil {
		t.Fatalf("NewVerifier: %v", err)
	}
	return v
}

// valid returns claims for alice that expire in an hour, with extra merged
// in; a nil value in extra removes that claim.
func valid(extra jwt.MapClaims) jwt.MapClaims {
	c := jwt.MapClaims{"sub": "alice", "exp": testNow.Add(time.Hour).Unix(), "iat": testNow.Unix()}
	for k, v := range extra {
		if v == nil {
			delete(c, k)
			continue
		}
		c[k] = v
	}
	return c
}

// jsonNullMarker encodes as a JSON null, since a nil value in valid's extra
// means "remove the claim".
type jsonNullMarker struct{}

func (jsonNullMarker) MarshalJSON() ([]byte, error) { return []byte("null"), nil }

// claimsEqual compares claims, their times by instant, not location. A
// want without ValidUntil expects the default leeway after Expires.
func claimsEqual(got, want Claims) bool {
	if want.ValidUntil.IsZero() && !want.Expires.IsZero() {
		want.ValidUntil = want.Expires.Add(DefaultLeeway)
	}
	if !got.Expires.Equal(want.Expires) || !got.ValidUntil.Equal(want.ValidUntil) {
		return false
	}
	got.Expires, want.Expires = time.Time{}, time.Time{}
	got.ValidUntil, want.ValidUntil = time.Time{}, time.Time{}
	return reflect.DeepEqual(got, want)
}

// checkVerify checks the result of Verify against want or wantErr, and that
// an error never quotes the token.
func checkVerify(t *testing.T, v *Verifier, token string, want Claims, wantErr error) {
	t.Helper()
	got, err := v.Verify(token)
	if wantErr == nil {
		if err != nil {
			t.Fatalf("Verify = %v, want no error", err)
		}
		if !claimsEqual(got, want) {
			t.Errorf("Verify = %+v, want %+v", got, want)
		}
		return
	}
	t.Logf("Verify: %v", err)
	if !errors.Is(err, wantErr) {
		t.Fatalf("Verify = %v, want %v", err, wantErr)
	}
	if !errors.Is(err, ErrInvalidToken) {
		t.Errorf("Verify = %v, want errors.Is(err, ErrInvalidToken)", err)
	}
	if wantErr != ErrExpired && errors.Is(err, ErrExpired) {
		t.Errorf("Verify = %v, want it not to be ErrExpired", err)
	}
	if !reflect.DeepEqual(got, Claims{}) {
		t.Errorf("Verify returned claims %+v with an error", got)
	}
	for _, part := range strings.Split(token, ".") {
		if len(part) >= 8 && strings.Contains(err.Error(), part) {
			t.Errorf("error %q quotes the token", err)
		}
	}
}

func TestVerifier_HMAC(t *testing.T) {
	t.Parallel()
	exp := testNow.Add(time.Hour)
	tests := []struct {
		name       string
		token      func(t *testing.T) string
		requireExp bool
		want       Claims
		wantErr    error
	}{
		{
			name:  "Good",
			token: func(t *testing.T) string { return mint(t, jwt.SigningMethodHS256, testSecret, valid(nil)) },
			want:  Claims{User: "alice", Expires: exp},
		},
		{
			name:  "HS512",
			token: func(t *testing.T) string { return mint(t, jwt.SigningMethodHS512, testSecret, valid(nil)) },
			want:  Claims{User: "alice", Expires: exp},
		},
		{
			name: "UserIDWithPunctuation",
			token: func(t *testing.T) string {
				return mint(t, jwt.SigningMethodHS256, testSecret, valid(jwt.MapClaims{"sub": "auth0|123"}))
			},
			want: Claims{User: "auth0|123", Expires: exp},
		},
		{
			name: "BadSignature",
			token: func(t *testing.T) string {
				return mint(t, jwt.SigningMethodHS256, []byte("another secret, just as long as it"), valid(nil))
			},
			wantErr: ErrInvalidToken,
		},
		{
			name: "TamperedPayload",
			token: func(t *testing.T) string {
				good := strings.Split(mint(t, jwt.SigningMethodHS256, testSecret, valid(nil)), ".")
				evil := strings.Split(mint(t, jwt.SigningMethodHS256, testSecret, valid(jwt.MapClaims{"sub": "root"})), ".")
				return good[0] + "." + evil[1] + "." + good[2]
			},
			wantErr: ErrInvalidToken,
		},
		{
			name:    "Empty",
			token:   func(*testing.T) string { return "" },
			wantErr: ErrInvalidToken,
		},
		{
			name:    "Garbage",
			token:   func(*testing.T) string { return "this-is-not-a-jwt-at-all" },
			wantErr: ErrInvalidToken,
		},
		{
			name:    "GarbageSegments",
			token:   func(*testing.T) string { return "eyJhbGciOiJIUzI1NiJ9.notbase64!!!!.xxxxxxxxxxxx" },
			wantErr: ErrInvalidToken,
		},
		{
			name: "AlgNone",
			token: func(t *testing.T) string {
				return mint(t, jwt.SigningMethodNone, jwt.UnsafeAllowNoneSignatureType, valid(nil))
			},
			wantErr: ErrInvalidToken,
		},
		{
			name: "AlgNoneWithHMACSignature",
			token: func(t *testing.T) string {
				parts := strings.Split(mint(t, jwt.SigningMethodHS256, testSecret, valid(nil)), ".")
				none := strings.Split(mint(t, jwt.SigningMethodNone, jwt.UnsafeAllowNoneSignatureType, valid(nil)), ".")
				return none[0] + "." + parts[1] + "." + parts[2]
			},
			wantErr: ErrInvalidToken,
		},
		{
			name:    "UnknownAlg",
			token:   func(t *testing.T) string { return withHeader(t, `{"alg":"HS999","typ":"JWT"}`) },
			wantErr: ErrInvalidToken,
		},
		{
			name:    "MissingAlg",
			token:   func(t *testing.T) string { return withHeader(t, `{"typ":"JWT"}`) },
			wantErr: ErrInvalidToken,
		},
		{
			name: "MissingSub",
			token: func(t *testing.T) string {
				return mint(t, jwt.SigningMethodHS256, testSecret, valid(jwt.MapClaims{"sub": nil}))
			},
			wantErr: ErrInvalidToken,
		},
		{
			name: "EmptySub",
			token: func(t *testing.T) string {
				return mint(t, jwt.SigningMethodHS256, testSecret, valid(jwt.MapClaims{"sub": ""}))
			},
			wantErr: ErrInvalidToken,
		},
		{
			name: "SubNotString",
			token: func(t *testing.T) string {
				return mint(t, jwt.SigningMethodHS256, testSecret, valid(jwt.MapClaims{"sub": 42}))
			},
			wantErr: ErrInvalidToken,
		},
		{
			name: "SubNotValidUser",
			token: func(t *testing.T) string {
				return mint(t, jwt.SigningMethodHS256, testSecret, valid(jwt.MapClaims{"sub": "ali ce"}))
			},
			wantErr: ErrInvalidToken,
		},
		{
			name: "SubTooLong",
			token: func(t *testing.T) string {
				return mint(t, jwt.SigningMethodHS256, testSecret, valid(jwt.MapClaims{"sub": strings.Repeat("a", 128)}))
			},
			wantErr: ErrInvalidToken,
		},
		{
			name: "MissingExpRequired",
			token: func(t *testing.T) string {
				return mint(t, jwt.SigningMethodHS256, testSecret, valid(jwt.MapClaims{"exp": nil}))
			},
			requireExp: true,
			wantErr:    ErrInvalidToken,
		},
		{
			name: "MissingExpNotRequired",
			token: func(t *testing.T) string {
				return mint(t, jwt.SigningMethodHS256, testSecret, valid(jwt.MapClaims{"exp": nil}))
			},
			want: Claims{User: "alice"},
		},
		{
			name:       "ExpPresentRequired",
			token:      func(t *testing.T) string { return mint(t, jwt.SigningMethodHS256, testSecret, valid(nil)) },
			requireExp: true,
			want:       Claims{User: "alice", Expires: exp},
		},
		{
			name: "Expired",
			token: func(t *testing.T) string {
				return mint(t, jwt.SigningMethodHS256, testSecret, valid(jwt.MapClaims{"exp": testNow.Add(-time.Minute).Unix()}))
			},
			wantErr: ErrExpired,
		},
		{
			name: "ExpZero",
			token: func(t *testing.T) string {
				return mint(t, jwt.SigningMethodHS256, testSecret, valid(jwt.MapClaims{"exp": 0}))
			},
			wantErr: ErrExpired,
		},
		{
			name: "ExpiredWithinLeeway",
			token: func(t *testing.T) string {
				return mint(t, jwt.SigningMethodHS256, testSecret, valid(jwt.MapClaims{"exp": testNow.Add(-2 * time.Second).Unix()}))
			},
			want: Claims{User: "alice", Expires: testNow.Add(-2 * time.Second)},
		},
		{
			name: "ExpNotNumber",
			token: func(t *testing.T) string {
				return mint(t, jwt.SigningMethodHS256, testSecret, valid(jwt.MapClaims{"exp": "tomorrow"}))
			},
			wantErr: ErrInvalidToken,
		},
		{
			name: "NotYetValid",
			token: func(t *testing.T) string {
				return mint(t, jwt.SigningMethodHS256, testSecret, valid(jwt.MapClaims{"nbf": testNow.Add(time.Minute).Unix()}))
			},
			wantErr: ErrInvalidToken,
		},
		{
			name: "NotYetValidWithinLeeway",
			token: func(t *testing.T) string {
				return mint(t, jwt.SigningMethodHS256, testSecret, valid(jwt.MapClaims{"nbf": testNow.Add(2 * time.Second).Unix()}))
			},
			want: Claims{User: "alice", Expires: exp},
		},
		{
			name: "NbfPast",
			token: func(t *testing.T) string {
				return mint(t, jwt.SigningMethodHS256, testSecret, valid(jwt.MapClaims{"nbf": testNow.Add(-time.Minute).Unix()}))
			},
			want: Claims{User: "alice", Expires: exp},
		},
		{
			name: "RoomsAndPublish",
			token: func(t *testing.T) string {
				return mint(t, jwt.SigningMethodHS256, testSecret, valid(jwt.MapClaims{"rooms": []string{"chat:*", "general"}, "publish": []string{"chat:*"}}))
			},
			want: Claims{User: "alice", Expires: exp, Rooms: []string{"chat:*", "general"}, HasRooms: true, Publish: []string{"chat:*"}, HasPublish: true},
		},
		{
			name: "EmptyRoomsAndPublish",
			token: func(t *testing.T) string {
				return mint(t, jwt.SigningMethodHS256, testSecret, valid(jwt.MapClaims{"rooms": []string{}, "publish": []string{}}))
			},
			want: Claims{User: "alice", Expires: exp, Rooms: []string{}, HasRooms: true, Publish: []string{}, HasPublish: true},
		},
		{
			name: "RoomsString",
			token: func(t *testing.T) string {
				return mint(t, jwt.SigningMethodHS256, testSecret, valid(jwt.MapClaims{"rooms": "chat:*"}))
			},
			wantErr: ErrInvalidToken,
		},
		{
			name: "RoomsNull",
			token: func(t *testing.T) string {
				return mint(t, jwt.SigningMethodHS256, testSecret, valid(jwt.MapClaims{"rooms": jsonNullMarker{}}))
			},
			wantErr: ErrInvalidToken,
		},
		{
			name: "RoomsNumbers",
			token: func(t *testing.T) string {
				return mint(t, jwt.SigningMethodHS256, testSecret, valid(jwt.MapClaims{"rooms": []int{1, 2}}))
			},
			wantErr: ErrInvalidToken,
		},
		{
			name: "RoomsObject",
			token: func(t *testing.T) string {
				return mint(t, jwt.SigningMethodHS256, testSecret, valid(jwt.MapClaims{"rooms": map[string]bool{"a": true}}))
			},
			wantErr: ErrInvalidToken,
		},
		{
			name: "RoomsInboxPattern",
			token: func(t *testing.T) string {
				return mint(t, jwt.SigningMethodHS256, testSecret, valid(jwt.MapClaims{"rooms": []string{"@bob"}}))
			},
			wantErr: ErrInvalidToken,
		},
		{
			name: "RoomsEmptyPattern",
			token: func(t *testing.T) string {
				return mint(t, jwt.SigningMethodHS256, testSecret, valid(jwt.MapClaims{"rooms": []string{"a", ""}}))
			},
			wantErr: ErrInvalidToken,
		},
		{
			name: "PublishWrongType",
			token: func(t *testing.T) string {
				return mint(t, jwt.SigningMethodHS256, testSecret, valid(jwt.MapClaims{"publish": true}))
			},
			wantErr: ErrInvalidToken,
		},
		{
			name: "PublishBadPattern",
			token: func(t *testing.T) string {
				return mint(t, jwt.SigningMethodHS256, testSecret, valid(jwt.MapClaims{"publish": []string{"a b"}}))
			},
			wantErr: ErrInvalidToken,
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			v := newVerifier(t, VerifierConfig{Secret: testSecret, RequireExp: tt.requireExp})
			checkVerify(t, v, tt.token(t), tt.want, tt.wantErr)
		})
	}
}

func TestVerifier_PublicKey(t *testing.T) {
	t.Parallel()
	k := testKeys()
	rsaPEM := publicPEM(t, &k.rsa.PublicKey)
	ec256PEM := publicPEM(t, &k.ec256.PublicKey)
	ec384PEM := publicPEM(t, &k.ec384.PublicKey)
	want := Claims{User: "alice", Expires: testNow.Add(time.Hour)}
	tests := []struct {
		name    string
		cfg     VerifierConfig
		method  jwt.SigningMethod
		key     any
		wantErr error
	}{
		{"RS256", VerifierConfig{PublicKeyPEM: rsaPEM}, jwt.SigningMethodRS256, k.rsa, nil},
		{"RS384", VerifierConfig{PublicKeyPEM: rsaPEM}, jwt.SigningMethodRS384, k.rsa, nil},
		{"RS512", VerifierConfig{PublicKeyPEM: rsaPEM}, jwt.SigningMethodRS512, k.rsa, nil},
		{"RS256OtherKey", VerifierConfig{PublicKeyPEM: rsaPEM}, jwt.SigningMethodRS256, k.rsaOther, ErrInvalidToken},
		{"PS256NotAccepted", VerifierConfig{PublicKeyPEM: rsaPEM}, jwt.SigningMethodPS256, k.rsa, ErrInvalidToken},
		{"ES256", VerifierConfig{PublicKeyPEM: ec256PEM}, jwt.SigningMethodES256, k.ec256, nil},
		{"ES384", VerifierConfig{PublicKeyPEM: ec384PEM}, jwt.SigningMethodES384, k.ec384, nil},
		{"ES256OtherCurveKey", VerifierConfig{PublicKeyPEM: ec384PEM}, jwt.SigningMethodES256, k.ec256, ErrInvalidToken},
		{"ES256AgainstRSAKey", VerifierConfig{PublicKeyPEM: rsaPEM}, jwt.SigningMethodES256, k.ec256, ErrInvalidToken},
		{"RS256AgainstECKey", VerifierConfig{PublicKeyPEM: ec256PEM}, jwt.SigningMethodRS256, k.rsa, ErrInvalidToken},
		// Algorithm confusion: the public key is public, so an attacker can
		// use its PEM bytes as an HMAC secret.
		{"HS256WithRSAPEMAsSecret", VerifierConfig{PublicKeyPEM: rsaPEM}, jwt.SigningMethodHS256, rsaPEM, ErrInvalidToken},
		{"HS256WithECPEMAsSecret", VerifierConfig{PublicKeyPEM: ec256PEM}, jwt.SigningMethodHS256, ec256PEM, ErrInvalidToken},
		{"HS256WithPEMAsSecretBothKeys", VerifierConfig{Secret: testSecret, PublicKeyPEM: rsaPEM}, jwt.SigningMethodHS256, rsaPEM, ErrInvalidToken},
		{"HS256OnlyPublicKey", VerifierConfig{PublicKeyPEM: rsaPEM}, jwt.SigningMethodHS256, testSecret, ErrInvalidToken},
		{"BothKeysHS256", VerifierConfig{Secret: testSecret, PublicKeyPEM: rsaPEM}, jwt.SigningMethodHS256, testSecret, nil},
		{"BothKeysRS256", VerifierConfig{Secret: testSecret, PublicKeyPEM: rsaPEM}, jwt.SigningMethodRS256, k.rsa, nil},
		{"BothKeysES256", VerifierConfig{Secret: testSecret, PublicKeyPEM: ec256PEM}, jwt.SigningMethodES256, k.ec256, nil},
		{"SecretOnlyRS256", VerifierConfig{Secret: testSecret}, jwt.SigningMethodRS256, k.rsa, ErrInvalidToken},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			v := newVerifier(t, tt.cfg)
			checkVerify(t, v, mint(t, tt.method, tt.key, valid(nil)), want, tt.wantErr)
		})
	}
}

func TestVerifier_Expired(t *testing.T) {
	t.Parallel()
	v := newVerifier(t, VerifierConfig{Secret: testSecret, Leeway: -1})
	token := mint(t, jwt.SigningMethodHS256, testSecret, valid(jwt.MapClaims{"exp": testNow.Add(-time.Second).Unix()}))
	_, err := v.Verify(token)
	if !errors.Is(err, ErrExpired) || !errors.Is(err, ErrInvalidToken) {
		t.Fatalf("Verify(expired) = %v, want ErrExpired and ErrInvalidToken", err)
	}
	if !errors.Is(ErrExpired, ErrInvalidToken) {
		t.Errorf("errors.Is(ErrExpired, ErrInvalidToken) = false")
	}
	if errors.Is(ErrInvalidToken, ErrExpired) {
		t.Errorf("errors.Is(ErrInvalidToken, ErrExpired) = true")
	}
	// A bad signature wins over expiry: nothing in an unverified token is
	// believed, its exp included.
	forged := mint(t, jwt.SigningMethodHS256, []byte("forged"), valid(jwt.MapClaims{"exp": testNow.Add(-time.Hour).Unix()}))
	if _, err := v.Verify(forged); !errors.Is(err, ErrInvalidToken) || errors.Is(err, ErrExpired) {
		t.Errorf("Verify(forged and expired) = %v, want ErrInvalidToken only", err)
	}
}

func TestVerifier_Nil(t *testing.T) {
	t.Parallel()
	var v *Verifier
	token := mint(t, jwt.SigningMethodHS256, testSecret, valid(nil))
	if _, err := v.Verify(token); !errors.Is(err, ErrInvalidToken) {
		t.Errorf("(*Verifier)(nil).Verify = %v, want ErrInvalidToken", err)
	}
}

func TestNewVerifier(t *testing.T) {
	t.Parallel()
	k := testKeys()
	small, err := rsa.GenerateKey(rand.Reader, 1024)
	if err != nil {
		t.Fatalf("GenerateKey: %v", err)
	}
	p224, err := ecdsa.GenerateKey(elliptic.P224(), rand.Reader)
	if err != nil {
		t.Fatalf("GenerateKey: %v", err)
	}
	privDER, err := x509.MarshalPKCS8PrivateKey(k.rsa)
	if err != nil {
		t.Fatalf("MarshalPKCS8PrivateKey: %v", err)
	}
	privPEM := pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: privDER})
	pkcs1PEM := pem.EncodeToMemory(&pem.Block{Type: "RSA PUBLIC KEY", Bytes: x509.MarshalPKCS1PublicKey(&k.rsa.PublicKey)})
	tests := []struct {
		name        string
		cfg         VerifierConfig
		wantErr     bool
		wantNoKey   bool
		wantMethods []string
	}{
		{name: "Secret", cfg: VerifierConfig{Secret: testSecret}, wantMethods: []string{"HS256", "HS384", "HS512"}},
		{name: "RSA", cfg: VerifierConfig{PublicKeyPEM: publicPEM(t, &k.rsa.PublicKey)}, wantMethods: []string{"RS256", "RS384", "RS512"}},
		{name: "RSAPKCS1", cfg: VerifierConfig{PublicKeyPEM: pkcs1PEM}, wantMethods: []string{"RS256", "RS384", "RS512"}},
		{name: "P256", cfg: VerifierConfig{PublicKeyPEM: publicPEM(t, &k.ec256.PublicKey)}, wantMethods: []string{"ES256"}},
		{name: "P384", cfg: VerifierConfig{PublicKeyPEM: publicPEM(t, &k.ec384.PublicKey)}, wantMethods: []string{"ES384"}},
		{name: "Both", cfg: VerifierConfig{Secret: testSecret, PublicKeyPEM: publicPEM(t, &k.ec256.PublicKey)}, wantMethods: []string{"HS256", "HS384", "HS512", "ES256"}},
		{name: "NoKey", cfg: VerifierConfig{}, wantErr: true, wantNoKey: true},
		{name: "EmptySecret", cfg: VerifierConfig{Secret: []byte{}}, wantErr: true, wantNoKey: true},
		{name: "NotPEM", cfg: VerifierConfig{PublicKeyPEM: []byte("not a key")}, wantErr: true},
		{name: "PEMGarbage", cfg: VerifierConfig{PublicKeyPEM: pem.EncodeToMemory(&pem.Block{Type: "PUBLIC KEY", Bytes: []byte("junk")})}, wantErr: true},
		{name: "PrivateKey", cfg: VerifierConfig{PublicKeyPEM: privPEM}, wantErr: true},
		{name: "SmallRSA", cfg: VerifierConfig{PublicKeyPEM: publicPEM(t, &small.PublicKey)}, wantErr: true},
		{name: "P224", cfg: VerifierConfig{PublicKeyPEM: publicPEM(t, &p224.PublicKey)}, wantErr: true},
		{name: "BadPEMWithSecret", cfg: VerifierConfig{Secret: testSecret, PublicKeyPEM: []byte("not a key")}, wantErr: true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			v, err := NewVerifier(tt.cfg)
			if !tt.wantErr {
				if err != nil {
					t.Fatalf("NewVerifier = %v, want no error", err)
				}
				if got := v.Methods(); !reflect.DeepEqual(got, tt.wantMethods) {
					t.Errorf("Methods() = %v, want %v", got, tt.wantMethods)
				}
				return
			}
			if err == nil {
				t.Fatalf("NewVerifier = %v, nil, want an error", v)
			}
			t.Logf("NewVerifier: %v", err)
			if got := errors.Is(err, ErrNoKey); got != tt.wantNoKey {
				t.Errorf("NewVerifier = %v; errors.Is(err, ErrNoKey) = %v, want %v", err, got, tt.wantNoKey)
			}
		})
	}
}

func TestVerifier_DefaultClock(t *testing.T) {
	t.Parallel()
	v, err := NewVerifier(VerifierConfig{Secret: testSecret, RequireExp: true})
	if err != nil {
		t.Fatalf("NewVerifier: %v", err)
	}
	token, err := Sign(testSecret, Claims{User: "alice", Expires: time.Now().Add(time.Hour)})
	if err != nil {
		t.Fatalf("Sign: %v", err)
	}
	if _, err := v.Verify(token); err != nil {
		t.Errorf("Verify = %v, want no error", err)
	}
}

func TestSign(t *testing.T) {
	t.Parallel()
	exp := testNow.Add(time.Hour)
	tests := []struct {
		name string
		in   Claims
		want Claims
	}{
		{"NoRestrictions", Claims{User: "alice", Expires: exp}, Claims{User: "alice", Expires: exp}},
		{"NoExpiry", Claims{User: "alice"}, Claims{User: "alice"}},
		{"SubSecondExpiryRoundsDown", Claims{User: "alice", Expires: exp.Add(900 * time.Millisecond)}, Claims{User: "alice", Expires: exp}},
		{
			"Rooms",
			Claims{User: "alice", Expires: exp, Rooms: []string{"chat:*"}, HasRooms: true},
			Claims{User: "alice", Expires: exp, Rooms: []string{"chat:*"}, HasRooms: true},
		},
		{
			"RoomsWithoutHasRooms",
			Claims{User: "alice", Expires: exp, Rooms: []string{"chat:*"}},
			Claims{User: "alice", Expires: exp, Rooms: []string{"chat:*"}, HasRooms: true},
		},
		{
			"EmptyRoomsAndPublish",
			Claims{User: "alice", Expires: exp, HasRooms: true, HasPublish: true},
			Claims{User: "alice", Expires: exp, Rooms: []string{}, HasRooms: true, Publish: []string{}, HasPublish: true},
		},
		{
			"PublishOnly",
			Claims{User: "alice", Expires: exp, Publish: []string{"news", "chat:?"}, HasPublish: true},
			Claims{User: "alice", Expires: exp, Publish: []string{"news", "chat:?"}, HasPublish: true},
		},
	}
	v := newVerifier(t, VerifierConfig{Secret: testSecret})
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			token, err := Sign(testSecret, tt.in)
			if err != nil {
				t.Fatalf("Sign(%+v) = %v", tt.in, err)
			}
			checkVerify(t, v, token, tt.want, nil)
		})
	}
}

func TestSign_Errors(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name    string
		secret  []byte
		in      Claims
		wantErr error
	}{
		{"NoSecret", nil, Claims{User: "alice"}, ErrNoKey},
		{"NoUser", testSecret, Claims{}, nil},
		{"BadUser", testSecret, Claims{User: "a b"}, nil},
		{"BadRoomPattern", testSecret, Claims{User: "alice", Rooms: []string{"@bob"}}, ErrBadPattern},
		{"BadPublishPattern", testSecret, Claims{User: "alice", Publish: []string{""}, HasPublish: true}, ErrBadPattern},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			token, err := Sign(tt.secret, tt.in)
			if err == nil {
				t.Fatalf("Sign = %q, nil; want an error", token)
			}
			if tt.wantErr != nil && !errors.Is(err, tt.wantErr) {
				t.Errorf("Sign = %v, want %v", err, tt.wantErr)
			}
		})
	}
}

func TestClaims_CanJoinCanPublish(t *testing.T) {
	t.Parallel()
	open := Claims{User: "alice"}
	chat := Claims{User: "alice", Rooms: []string{"chat:*", "lobby"}, HasRooms: true}
	noRooms := Claims{User: "alice", Rooms: []string{}, HasRooms: true}
	readOnly := Claims{User: "alice", Rooms: []string{"news:*"}, HasRooms: true, Publish: []string{}, HasPublish: true}
	publishSome := Claims{User: "alice", Rooms: []string{"chat:*"}, HasRooms: true, Publish: []string{"chat:own"}, HasPublish: true}
	publishOnly := Claims{User: "alice", Publish: []string{"chat:*"}, HasPublish: true}
	star := Claims{User: "alice", Rooms: []string{"*"}, HasRooms: true}
	unflagged := Claims{User: "alice", Rooms: []string{"lobby"}}
	noUser := Claims{}
	tests := []struct {
		name        string
		claims      Claims
		room        string
		wantJoin    bool
		wantPublish bool
	}{
		{"AbsentRoomsAllowsAny", open, "general", true, true},
		{"AbsentRoomsOwnInbox", open, "@alice", true, true},
		{"AbsentRoomsOtherInbox", open, "@bob", false, false},
		{"PatternMatch", chat, "chat:42", true, true},
		{"PatternLiteral", chat, "lobby", true, true},
		{"PatternNoMatch", chat, "general", false, false},
		{"PatternOwnInbox", chat, "@alice", true, true},
		{"PatternOtherInbox", chat, "@bob", false, false},
		{"EmptyRoomsNothing", noRooms, "general", false, false},
		{"EmptyRoomsStillOwnInbox", noRooms, "@alice", true, true},
		{"EmptyPublishNothing", readOnly, "news:1", true, false},
		{"EmptyPublishOwnInbox", readOnly, "@alice", true, true},
		{"PublishSubset", publishSome, "chat:own", true, true},
		{"PublishSubsetOther", publishSome, "chat:other", true, false},
		{"PublishWithoutRooms", publishOnly, "general", true, false},
		{"PublishWithoutRoomsMatch", publishOnly, "chat:x", true, true},
		{"StarStillNoOtherInbox", star, "@bob", false, false},
		{"StarAnyRoom", star, "anything", true, true},
		{"InboxPrefixOfUser", open, "@alic", false, false},
		{"InboxExtendsUser", open, "@alice2", false, false},
		{"BareAt", open, "@", false, false},
		{"RoomsWithoutFlagRestrict", unflagged, "general", false, false},
		{"RoomsWithoutFlagMatch", unflagged, "lobby", true, true},
		{"NoUserNoInbox", noUser, "@", false, false},
		{"NoUserRooms", noUser, "general", true, true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			if got := tt.claims.CanJoin(tt.room); got != tt.wantJoin {
				t.Errorf("%+v.CanJoin(%q) = %v, want %v", tt.claims, tt.room, got, tt.wantJoin)
			}
			if got := tt.claims.CanPublish(tt.room); got != tt.wantPublish {
				t.Errorf("%+v.CanPublish(%q) = %v, want %v", tt.claims, tt.room, got, tt.wantPublish)
			}
		})
	}
}

// The boundary of ValidUntil: Verify accepts the token until exp plus the
// leeway, and ValidUntil says exactly when that ends, for the default
// leeway, another one and none.
func TestVerifier_ValidUntilIsTheLastMomentAccepted(t *testing.T) {
	t.Parallel()
	exp := testNow.Add(time.Minute).Truncate(time.Second)
	token := mint(t, jwt.SigningMethodHS256, testSecret, valid(jwt.MapClaims{"exp": exp.Unix()}))
	for _, tt := range []struct {
		leeway, want time.Duration
	}{{0, DefaultLeeway}, {30 * time.Second, 30 * time.Second}, {-1, 0}} {
		now := testNow
		v, err := NewVerifier(VerifierConfig{Secret: testSecret, Leeway: tt.leeway, Now: func() time.Time { return now }})
		if err != nil {
			t.Fatal(err)
		}
		c, err := v.Verify(token)
		if err != nil {
			t.Fatalf("leeway %v: Verify = %v", tt.leeway, err)
		}
		if want := exp.Add(tt.want); !c.ValidUntil.Equal(want) {
			t.Fatalf("leeway %v: ValidUntil = %v, want exp+%v = %v", tt.leeway, c.ValidUntil, tt.want, want)
		}
		now = c.ValidUntil.Add(-time.Millisecond)
		if _, err := v.Verify(token); err != nil {
			t.Errorf("leeway %v: Verify 1ms before ValidUntil = %v, want accepted", tt.leeway, err)
		}
		now = c.ValidUntil
		if _, err := v.Verify(token); !errors.Is(err, ErrExpired) {
			t.Errorf("leeway %v: Verify at ValidUntil = %v, want ErrExpired", tt.leeway, err)
		}
	}
	// A token without exp has no ValidUntil.
	v := newVerifier(t, VerifierConfig{Secret: testSecret})
	c, err := v.Verify(mint(t, jwt.SigningMethodHS256, testSecret, valid(jwt.MapClaims{"exp": nil})))
	if err != nil || !c.ValidUntil.IsZero() {
		t.Errorf("Verify(no exp) = %+v, %v; want no ValidUntil", c, err)
	}
}
