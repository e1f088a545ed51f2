package auth

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rsa"
	"encoding/pem"
	"errors"
	"fmt"
	"slices"
	"strings"
	"time"

	"github.com/golang-jwt/jwt/v5"

	"github.com/switchboard-rt/switchboard/protocol"
)

// DefaultLeeway is the clock skew allowed on exp and nbf when
// VerifierConfig.Leeway is zero.
const DefaultLeeway = 5 * time.Second

// minRSABits is the smallest RSA key accepted, as RFC 7518 section 3.3
// requires for RS256.
const minRSABits = 2048

// Sentinel errors of package auth.
var (
	// ErrNoKey means no verification key was configured: NewVerifier got
	// neither Secret nor PublicKeyPEM, or Sign got no secret. Only --dev
	// mode runs without a key.
	ErrNoKey = errors.New("auth: no verification key")
	// ErrInvalidToken is wrapped by every error of Verify, with a short
	// reason: bad signature, wrong algorithm, missing sub, and so on.
	ErrInvalidToken = errors.New("auth: invalid token")
	// ErrExpired is returned by Verify for a token whose exp has passed.
	// errors.Is(ErrExpired, ErrInvalidToken) is true as well, so callers
	// that only care about validity need not check for it.
	ErrExpired error = expiredError{}
)

// expiredError is the type of ErrExpired: an error that also is an
// ErrInvalidToken without repeating its text.
type expiredError struct{}

func (expiredError) Error() string { return "auth: token expired" }

// Is makes errors.Is(ErrExpired, ErrInvalidToken) true.
func (expiredError) Is(target error) bool { return target == ErrInvalidToken }

// VerifierConfig configures NewVerifier. At least one of Secret and
// PublicKeyPEM is required; with both, tokens of either family are accepted,
// each checked only with its own key.
type VerifierConfig struct {
	// Secret is the HMAC key for HS256, HS384 and HS512 tokens
	// (--jwt-secret). Empty: HMAC tokens are refused.
	Secret []byte
	// PublicKeyPEM is a PEM-encoded RSA or ECDSA public key, PKIX, PKCS#1
	// or inside a certificate (--jwt-public-key). An RSA key (2048 bits or
	// more) accepts RS256, RS384 and RS512; an ECDSA key accepts the one
	// algorithm of its curve: ES256 (P-256), ES384 (P-384), ES512 (P-521).
	// Empty: such tokens are refused.
	PublicKeyPEM []byte
	// RequireExp refuses tokens without exp. PROTOCOL.md requires exp
	// everywhere but --dev. Default: false.
	RequireExp bool
	// Leeway is the clock skew allowed when checking exp and nbf.
	// Default: DefaultLeeway (5s). A negative value allows none.
	Leeway time.Duration
	// Now tells the time. Default: time.Now.
	Now func() time.Time
}

// Verifier checks tokens and extracts their Claims. It is immutable and safe
// for concurrent use. A nil *Verifier refuses every token.
type Verifier struct {
	secret  []byte
	rsaKey  *rsa.PublicKey
	ecKey   *ecdsa.PublicKey
	methods []string
	parser  *jwt.Parser
	leeway  time.Duration
}

// NewVerifier returns a Verifier for cfg. Without Secret and PublicKeyPEM
// the error wraps ErrNoKey; a PublicKeyPEM that holds no usable public key
// gives an error naming the problem.
func NewVerifier(cfg VerifierConfig) (*Verifier, error) {
	v := &Verifier{}
	if len(cfg.Secret) > 0 {
		v.secret = slices.Clone(cfg.Secret)
		v.methods = append(v.methods, "HS256", "HS384", "HS512")
	}
	if len(cfg.PublicKeyPEM) > 0 {
		if err := v.parsePublicKey(cfg.PublicKeyPEM); err != nil {
			return nil, fmt.Errorf("auth: PublicKeyPEM: %w", err)
		}
	}
	if len(v.methods) == 0 {
		return nil, fmt.Errorf("%w: set Secret or PublicKeyPEM", ErrNoKey)
	}

	leeway := cfg.Leeway
	switch {
	case leeway == 0:
		leeway = DefaultLeeway
	case leeway < 0:
		leeway = 0
	}
	now := cfg.Now
	if now == nil {
		now = time.Now
	}
	opts := []jwt.ParserOption{
		// The one defence against algorithm confusion: a token names its
		// alg, and only the families we hold a key for are allowed.
		jwt.WithValidMethods(v.methods),
		jwt.WithLeeway(leeway),
		jwt.WithTimeFunc(now),
	}
	if cfg.RequireExp {
		opts = append(opts, jwt.WithExpirationRequired())
	}
	v.parser = jwt.NewParser(opts...)
	v.leeway = leeway
	return v, nil
}

// parsePublicKey sets v's RSA or ECDSA key and its algorithms from pemBytes.
func (v *Verifier) parsePublicKey(pemBytes []byte) error {
	block, _ := pem.Decode(pemBytes)
	if block == nil {
		return errors.New("no PEM block found")
	}
	if strings.Contains(block.Type, "PRIVATE") {
		return fmt.Errorf("holds a %s; give the public key", block.Type)
	}
	if key, err := jwt.ParseRSAPublicKeyFromPEM(pemBytes); err == nil {
		if bits := key.N.BitLen(); bits < minRSABits {
			return fmt.Errorf("RSA key has %d bits, want at least %d", bits, minRSABits)
		}
		v.rsaKey = key
		v.methods = append(v.methods, "RS256", "RS384", "RS512")
		return nil
	}
	key, err := jwt.ParseECPublicKeyFromPEM(pemBytes)
	if err != nil {
		return fmt.Errorf("%s block is neither an RSA nor an ECDSA public key", block.Type)
	}
	var alg string
	switch key.Curve {
	case elliptic.P256():
		alg = "ES256"
	case elliptic.P384():
		alg = "ES384"
	case elliptic.P521():
		alg = "ES512"
	default:
		return fmt.Errorf("ECDSA curve %s is not supported; use P-256, P-384 or P-521", key.Curve.Params().Name)
	}
	v.ecKey = key
	v.methods = append(v.methods, alg)
	return nil
}

// Methods returns the JWT algorithms v accepts, such as ["HS256", "HS384",
// "HS512"].
func (v *Verifier) Methods() []string {
	if v == nil {
		return nil
	}
	return slices.Clone(v.methods)
}

// Verify checks token's signature, exp and nbf, and returns its claims.
// A token is accepted until exp plus the leeway, which Claims.ValidUntil
// reports. Every error satisfies errors.Is(err, ErrInvalidToken); an
// expired token's also errors.Is(err, ErrExpired). Errors never contain the
// token.
func (v *Verifier) Verify(token string) (Claims, error) {
	if v == nil {
		return Claims{}, fmt.Errorf("%w: %w", ErrInvalidToken, ErrNoKey)
	}
	if token == "" {
		return Claims{}, fmt.Errorf("%w: empty", ErrInvalidToken)
	}
	mc := jwt.MapClaims{}
	t, err := v.parser.ParseWithClaims(token, mc, v.key)
	if err != nil {
		return Claims{}, v.explain(t, mc, err)
	}
	c, err := claimsFrom(mc)
	if err == nil && !c.Expires.IsZero() {
		c.ValidUntil = c.Expires.Add(v.leeway)
	}
	return c, err
}

// key is the jwt.Keyfunc of v: each algorithm family gets its own key and
// nothing else. WithValidMethods already refuses families without a key;
// this is the second lock on the same door.
func (v *Verifier) key(t *jwt.Token) (any, error) {
	switch t.Method.(type) {
	case *jwt.SigningMethodHMAC:
		if v.secret != nil {
			return v.secret, nil
		}
	case *jwt.SigningMethodRSA:
		if v.rsaKey != nil {
			return v.rsaKey, nil
		}
	case *jwt.SigningMethodECDSA:
		if v.ecKey != nil {
			return v.ecKey, nil
		}
	}
	return nil, errors.New("no key for this algorithm")
}

// explain turns an error of jwt into ours. The texts of jwt's errors may
// quote pieces of the token (a JSON syntax error quotes the character it
// stopped at), so they are not wrapped: we keep to reasons we wrote.
func (v *Verifier) explain(t *jwt.Token, mc jwt.MapClaims, err error) error {
	switch {
	case errors.Is(err, jwt.ErrTokenMalformed):
		return fmt.Errorf("%w: malformed", ErrInvalidToken)
	case errors.Is(err, jwt.ErrTokenUnverifiable):
		if t != nil && t.Method == nil {
			return fmt.Errorf("%w: alg missing or unknown", ErrInvalidToken)
		}
		return fmt.Errorf("%w: unverifiable", ErrInvalidToken)
	case errors.Is(err, jwt.ErrTokenSignatureInvalid):
		// t.Method came from jwt's registry, so its name is one of a known
		// few, not text chosen by the token's author.
		if t != nil && t.Method != nil && !slices.Contains(v.methods, t.Method.Alg()) {
			return fmt.Errorf("%w: alg %s not accepted (want one of %s)", ErrInvalidToken, t.Method.Alg(), strings.Join(v.methods, ", "))
		}
		return fmt.Errorf("%w: bad signature", ErrInvalidToken)
	case errors.Is(err, jwt.ErrInvalidType):
		for _, name := range []string{"exp", "nbf"} {
			if x, ok := mc[name]; ok {
				if _, ok := x.(float64); !ok {
					return fmt.Errorf("%w: %s is not a number", ErrInvalidToken, name)
				}
			}
		}
		return fmt.Errorf("%w: a time claim is not a number", ErrInvalidToken)
	case errors.Is(err, jwt.ErrTokenExpired):
		return ErrExpired
	case errors.Is(err, jwt.ErrTokenNotValidYet):
		return fmt.Errorf("%w: not valid yet (nbf)", ErrInvalidToken)
	case errors.Is(err, jwt.ErrTokenRequiredClaimMissing):
		return fmt.Errorf("%w: exp missing", ErrInvalidToken)
	}
	return fmt.Errorf("%w: rejected", ErrInvalidToken)
}

// claimsFrom reads Claims from the verified claims mc.
func claimsFrom(mc jwt.MapClaims) (Claims, error) {
	var c Claims
	switch sub := mc["sub"].(type) {
	case nil:
		return Claims{}, fmt.Errorf("%w: sub missing", ErrInvalidToken)
	case string:
		if sub == "" {
			return Claims{}, fmt.Errorf("%w: sub missing", ErrInvalidToken)
		}
		if !protocol.ValidUser(sub) {
			return Claims{}, fmt.Errorf("%w: sub is not a valid user id (1-%d printable characters without spaces or braces)", ErrInvalidToken, protocol.MaxUserLen)
		}
		c.User = sub
	default:
		return Claims{}, fmt.Errorf("%w: sub is not a string", ErrInvalidToken)
	}

	exp, err := mc.GetExpirationTime()
	if err != nil {
		return Claims{}, fmt.Errorf("%w: exp is not a number", ErrInvalidToken)
	}
	if exp != nil {
		c.Expires = exp.Time
	} else if _, ok := mc["exp"]; ok {
		// jwt reads exp 0 as "no exp"; it is 1970, long past.
		return Claims{}, ErrExpired
	}

	if c.Rooms, c.HasRooms, err = patternList(mc, "rooms"); err != nil {
		return Claims{}, err
	}
	if c.Publish, c.HasPublish, err = patternList(mc, "publish"); err != nil {
		return Claims{}, err
	}
	return c, nil
}

// patternList reads the claim name as an array of valid patterns and reports
// whether it was present. null is refused rather than read as absent: absent
// grants every room, and a null written for "none" must not do that.
func patternList(mc jwt.MapClaims, name string) ([]string, bool, error) {
	raw, ok := mc[name]
	if !ok {
		return nil, false, nil
	}
	items, ok := raw.([]any)
	if !ok {
		return nil, false, fmt.Errorf("%w: %s must be an array of strings, got %s", ErrInvalidToken, name, jsonType(raw))
	}
	patterns := make([]string, 0, len(items))
	for i, item := range items {
		p, ok := item.(string)
		if !ok {
			return nil, false, fmt.Errorf("%w: %s[%d] must be a string, got %s", ErrInvalidToken, name, i, jsonType(item))
		}
		if reason := patternProblem(p); reason != "" {
			return nil, false, fmt.Errorf("%w: %s[%d] is not a valid pattern: %s", ErrInvalidToken, name, i, reason)
		}
		patterns = append(patterns, p)
	}
	return patterns, true, nil
}

// jsonType names the JSON type of a value decoded by encoding/json.
func jsonType(x any) string {
	switch x.(type) {
	case nil:
		return "null"
	case bool:
		return "a boolean"
	case float64:
		return "a number"
	case string:
		return "a string"
	case []any:
		return "an array"
	case map[string]any:
		return "an object"
	}
	return fmt.Sprintf("%T", x)
}
