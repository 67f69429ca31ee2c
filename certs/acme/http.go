package acme

import (
	"crypto/tls"
	"errors"
	"net"
	"net/http"
	"net/url"
	"strconv"
	"strings"
)

// ALPNProtocol is the ALPN protocol of TLS-ALPN-01 validation handshakes
// (RFC 8737 section 6.2). An https listener serving ACME certificates must
// list it in tls.Config.NextProtos, after "h2" and "http/1.1".
const ALPNProtocol = "acme-tls/1"

// IsTLSALPNChallenge reports whether hello is a CA's TLS-ALPN-01 validation
// handshake: RFC 8737 section 3 has the CA send SNI and the single ALPN
// protocol "acme-tls/1". A server with its own certificate selection must
// hand such a handshake to Manager.GetCertificate.
func IsTLSALPNChallenge(hello *tls.ClientHelloInfo) bool {
	return hello.ServerName != "" &&
		len(hello.SupportedProtos) == 1 && hello.SupportedProtos[0] == ALPNProtocol
}

// HTTPChallengeHandler answers HTTP-01 challenges (GET
// /.well-known/acme-challenge/TOKEN, RFC 8555 section 8.3) for certificates
// being obtained by this Manager, by any other Manager in the process
// (certmagic keeps active challenges process-wide), or by a process sharing
// its storage and CA; every other request, including tokens nobody issued,
// goes to next. nil next means 404. It is meant for the port-80 listener.
func (m *Manager) HTTPChallengeHandler(next http.Handler) http.Handler {
	if next == nil {
		next = http.NotFoundHandler()
	}
	return m.issuer.HTTPChallengeHandler(next)
}

// RedirectToHTTPS returns a handler that answers every request with a 308
// redirect to the same host and path over https, on httpsPort (0 or 443
// leave the port out of the URL). 308 keeps the method and body (RFC 9110
// section 15.4.9). A Host header that is not a plain host name or IP address,
// or a request target that would make no valid URL (an absolute-form target
// whose opaque part net/http does not check, such as "a:%"), gets 400
// rather than a redirect to somewhere odd.
func RedirectToHTTPS(httpsPort int) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		target, err := httpsURL(r.Host, httpsPort, r.URL.RequestURI())
		if err != nil {
			http.Error(w, err.Error(), http.StatusBadRequest)
			return
		}
		// Close rather than keep alive: a client that follows the
		// redirect has no more use for this plain-text connection.
		w.Header().Set("Connection", "close")
		http.Redirect(w, r, target, http.StatusPermanentRedirect)
	})
}

// Errors of httpsURL, which RedirectToHTTPS answers with 400.
var (
	errBadHost   = errors.New("bad Host header")
	errBadTarget = errors.New("bad request target")
)

// httpsURL builds the redirect target. It fails with errBadHost for a host
// that must not be echoed into a Location header, and with errBadTarget
// when the result would not parse as a URL.
func httpsURL(hostport string, httpsPort int, requestURI string) (string, error) {
	host := hostport
	if h, _, err := net.SplitHostPort(hostport); err == nil {
		host = h
	}
	host = strings.TrimSuffix(strings.TrimPrefix(host, "["), "]")
	if !validHost(host) {
		return "", errBadHost
	}
	if strings.Contains(host, ":") { // IPv6 literal
		host = "[" + host + "]"
	}
	if httpsPort != 0 && httpsPort != 443 {
		host += ":" + strconv.Itoa(httpsPort)
	}
	if !strings.HasPrefix(requestURI, "/") {
		requestURI = "/" + requestURI
	}
	// A request URI starting with "//" would make the Location a
	// scheme-relative URL pointing at another host once a client
	// re-parses the path; collapse the leading slashes.
	requestURI = "/" + strings.TrimLeft(requestURI, "/")
	target := "https://" + host + requestURI
	if _, err := url.Parse(target); err != nil {
		return "", errBadTarget
	}
	return target, nil
}

// validHost accepts DNS names (letters, digits, '-', '_', '.') and IP
// addresses.
func validHost(host string) bool {
	if host == "" || len(host) > 253 {
		return false
	}
	if net.ParseIP(host) != nil {
		return true
	}
	for i := 0; i < len(host); i++ {
		c := host[i]
		switch {
		case c >= 'a' && c <= 'z', c >= 'A' && c <= 'Z', c >= '0' && c <= '9', c == '-', c == '_', c == '.':
		default:
			return false
		}
	}
	return true
}
