package main

import (
	"errors"
	"fmt"
	"io"
	"time"

	"github.com/switchboard-rt/switchboard/auth"
	"github.com/switchboard-rt/switchboard/protocol"
)

// tokenAbout opens the usage of token.
const tokenAbout = `usage: switchboard token --user ID [--rooms P,..] [--publish P,..] [--ttl 1h]

Prints a HS256 token for development and tests, signed with the secret that
serve verifies. Every flag can also be set with the environment variable
shown beside it, so that SWITCHBOARD_JWT_SECRET serves both commands; a flag
on the command line wins.
`

// token prints a HS256 token, for development and tests.
func token(args []string, env lookupEnv, stdout io.Writer) error {
	var (
		user, secret   string
		rooms, publish listValue
		ttl            time.Duration
	)
	fs := newFlagSet("token", env)
	fs.help = stdout
	fs.about = tokenAbout
	fs.showEnv = true
	fs.StringVar(&user, "user", "", "user id (the token's sub)")
	fs.Var(&rooms, "rooms", "comma-separated patterns of rooms the user may join (default: all)")
	fs.Var(&publish, "publish", "comma-separated patterns of rooms the user may publish to (default: as --rooms)")
	fs.DurationVar(&ttl, "ttl", time.Hour, "lifetime of the token")
	fs.StringVar(&secret, "jwt-secret", "", "HS256 secret, as given to serve")
	if err := fs.parse(args); err != nil {
		return err
	}
	switch {
	case user == "":
		return &flagError{flag: "user", err: errors.New("is required")}
	case !protocol.ValidUser(user):
		return &flagError{flag: "user", err: errors.New("must be 1-127 printable characters without spaces or braces")}
	case secret == "":
		return &flagError{flag: "jwt-secret", err: errors.New("is required (or SWITCHBOARD_JWT_SECRET)")}
	case len(secret) < 16:
		return &flagError{flag: "jwt-secret", err: errors.New("must be at least 16 bytes long, as serve requires")}
	case ttl <= 0:
		return &flagError{flag: "ttl", err: errors.New("must be positive")}
	}
	for name, patterns := range map[string][]string{"rooms": rooms, "publish": publish} {
		for _, p := range patterns {
			if err := auth.ValidPattern(p); err != nil {
				return &flagError{flag: name, err: err}
			}
		}
	}
	c := auth.Claims{User: user, Expires: time.Now().Add(ttl).Truncate(time.Second)}
	if fs.Lookup("rooms").Value.(*countedValue).n > 0 || len(rooms) > 0 {
		c.Rooms, c.HasRooms = rooms, true
	}
	if fs.Lookup("publish").Value.(*countedValue).n > 0 || len(publish) > 0 {
		c.Publish, c.HasPublish = publish, true
	}
	tok, err := auth.Sign([]byte(secret), c)
	if err != nil {
		return fmt.Errorf("sign: %w", err)
	}
	_, err = fmt.Fprintln(stdout, tok)
	return err
}
