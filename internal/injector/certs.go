package injector

import (
	"bytes"
	"context"
	"crypto"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"errors"
	"fmt"
	"log/slog"
	"math/big"
	"net"
	"slices"
	"sync/atomic"
	"time"

	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/util/retry"
)

// Keys of the Secret the injector keeps its TLS material in.
const (
	secretCABundle = "ca.crt"  // PEM: the current CA first, then older CAs not yet expired
	secretCert     = "tls.crt" // PEM: the serving certificate
	secretKey      = "tls.key" // PEM: its private key (PKCS#8)
)

// CertOptions configures self-managed TLS.
type CertOptions struct {
	// Namespace and Secret locate the TLS material all replicas share.
	Namespace, Secret string
	// WebhookConfig is the MutatingWebhookConfiguration whose caBundle is
	// kept equal to the Secret's CA bundle.
	WebhookConfig string
	// Hosts are the serving certificate's DNS names and IP addresses.
	Hosts []string
	// Validity is the lifetime of a CA and serving certificate; a new pair is
	// made once less than a third of it is left. Default 90 days.
	Validity time.Duration
	// Clock reads the time; nil means time.Now. Tests move it forward to
	// age the certificate.
	Clock func() time.Time
}

// Certs keeps the injector's serving certificate in a Secret, rotates it, and
// keeps the webhook configuration's caBundle current. Replicas share the
// Secret; concurrent writers are ordered by the Secret's resourceVersion.
//
// Rotation never breaks admission: the CA bundle lists the new CA and every
// older CA that has not expired, and a replica serves a certificate only
// after the webhook configuration trusts its CA.
type Certs struct {
	client kubernetes.Interface
	opts   CertOptions
	log    *slog.Logger
	now    func() time.Time
	cert   atomic.Pointer[tls.Certificate]
}

// NewCerts returns a Certs; call Reconcile before serving.
func NewCerts(client kubernetes.Interface, opts CertOptions, log *slog.Logger) (*Certs, error) {
	if opts.Namespace == "" || opts.Secret == "" || opts.WebhookConfig == "" || len(opts.Hosts) == 0 {
		return nil, errors.New("injector: self-managed TLS needs a namespace, a Secret name, a webhook configuration name and at least one host")
	}
	if opts.Validity == 0 {
		opts.Validity = 90 * 24 * time.Hour
	}
	now := opts.Clock
	if now == nil {
		now = time.Now
	}
	return &Certs{client: client, opts: opts, log: log, now: now}, nil
}

// GetCertificate serves the current certificate (tls.Config.GetCertificate).
func (c *Certs) GetCertificate(*tls.ClientHelloInfo) (*tls.Certificate, error) {
	if cert := c.cert.Load(); cert != nil {
		return cert, nil
	}
	return nil, errors.New("injector: no serving certificate yet")
}

// Reconcile makes the Secret hold a usable certificate (creating or renewing
// it when needed), updates the webhook configuration's caBundle, and then
// serves the Secret's certificate.
func (c *Certs) Reconcile(ctx context.Context) error { return c.reconcile(ctx, false) }

// Rotate replaces the CA and serving certificate now, whatever their age.
func (c *Certs) Rotate(ctx context.Context) error { return c.reconcile(ctx, true) }

// Run reconciles every interval until ctx ends, logging failures.
func (c *Certs) Run(ctx context.Context, interval time.Duration) {
	t := time.NewTicker(interval)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
			if err := c.Reconcile(ctx); err != nil {
				c.log.Warn("keeping the webhook certificate current failed; retrying", "err", err)
			}
		}
	}
}

func (c *Certs) reconcile(ctx context.Context, force bool) error {
	var sec *corev1.Secret
	err := retry.OnError(retry.DefaultRetry, func(err error) bool {
		return apierrors.IsConflict(err) || apierrors.IsAlreadyExists(err)
	}, func() error {
		s, err := c.ensureSecret(ctx, force)
		sec = s
		return err
	})
	if err != nil {
		return fmt.Errorf("injector: certificate Secret %s/%s: %w", c.opts.Namespace, c.opts.Secret, err)
	}
	bundle := sec.Data[secretCABundle]
	if err := retry.RetryOnConflict(retry.DefaultRetry, func() error { return c.ensureCABundle(ctx, bundle) }); err != nil {
		return fmt.Errorf("injector: caBundle of %s: %w", c.opts.WebhookConfig, err)
	}
	pair, err := tls.X509KeyPair(sec.Data[secretCert], sec.Data[secretKey])
	if err != nil {
		return fmt.Errorf("injector: certificate Secret %s/%s: %w", c.opts.Namespace, c.opts.Secret, err)
	}
	if old := c.cert.Load(); old == nil || !bytes.Equal(old.Certificate[0], pair.Certificate[0]) {
		c.log.Info("serving a webhook certificate", "notAfter", pair.Leaf.NotAfter.UTC().Format(time.RFC3339))
	}
	c.cert.Store(&pair)
	return nil
}

// ensureSecret returns the Secret, after creating or renewing its contents
// when they are missing, unusable, close to expiry, or force is set.
func (c *Certs) ensureSecret(ctx context.Context, force bool) (*corev1.Secret, error) {
	secrets := c.client.CoreV1().Secrets(c.opts.Namespace)
	sec, err := secrets.Get(ctx, c.opts.Secret, metav1.GetOptions{})
	if apierrors.IsNotFound(err) {
		sec = &corev1.Secret{
			ObjectMeta: metav1.ObjectMeta{Name: c.opts.Secret, Namespace: c.opts.Namespace},
			Type:       corev1.SecretTypeOpaque,
		}
		if err := c.issue(sec); err != nil {
			return nil, err
		}
		c.log.Info("created the webhook certificate Secret")
		return secrets.Create(ctx, sec, metav1.CreateOptions{})
	}
	if err != nil {
		return nil, err
	}
	if why := c.renewReason(sec); why != "" || force {
		if force {
			why = "rotation requested"
		}
		if err := c.issue(sec); err != nil {
			return nil, err
		}
		c.log.Info("rotated the webhook certificate", "why", why)
		// The Secret's resourceVersion orders replicas: a conflict means
		// another replica rotated first, and the retry uses its certificate.
		return secrets.Update(ctx, sec, metav1.UpdateOptions{})
	}
	return sec, nil
}

// renewReason says why the Secret's certificate must be replaced, or "".
func (c *Certs) renewReason(sec *corev1.Secret) string {
	pair, err := tls.X509KeyPair(sec.Data[secretCert], sec.Data[secretKey])
	if err != nil {
		return "no usable certificate"
	}
	leaf := pair.Leaf
	if c.now().After(leaf.NotAfter.Add(-c.opts.Validity / 3)) {
		return "less than a third of its lifetime left"
	}
	for _, h := range c.opts.Hosts {
		if leaf.VerifyHostname(h) != nil {
			return "it does not name " + h
		}
	}
	roots := x509.NewCertPool()
	if !roots.AppendCertsFromPEM(sec.Data[secretCABundle]) {
		return "no CA bundle"
	}
	if _, err := leaf.Verify(x509.VerifyOptions{Roots: roots, CurrentTime: c.now()}); err != nil {
		return "its CA bundle does not verify it"
	}
	return ""
}

// issue puts a new CA and serving certificate into sec (the CA's key is
// dropped once it has signed: a rotation makes a new CA), keeping the older CAs
// that have not expired in the bundle (so certificates other replicas still
// serve stay trusted).
func (c *Certs) issue(sec *corev1.Secret) error {
	now := c.now()
	caKey, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return err
	}
	caTmpl := &x509.Certificate{
		Subject:               pkix.Name{CommonName: "leader-elector-injector-ca@" + now.UTC().Format(time.RFC3339)},
		NotBefore:             now.Add(-time.Hour), // tolerate clock skew with the API server
		NotAfter:              now.Add(c.opts.Validity),
		KeyUsage:              x509.KeyUsageCertSign | x509.KeyUsageDigitalSignature,
		BasicConstraintsValid: true,
		IsCA:                  true,
	}
	caDER, err := sign(caTmpl, caTmpl, caKey.Public(), caKey)
	if err != nil {
		return err
	}
	ca, err := x509.ParseCertificate(caDER)
	if err != nil {
		return err
	}
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return err
	}
	tmpl := &x509.Certificate{
		Subject:     pkix.Name{CommonName: c.opts.Hosts[0]},
		NotBefore:   now.Add(-time.Hour),
		NotAfter:    now.Add(c.opts.Validity),
		KeyUsage:    x509.KeyUsageDigitalSignature,
		ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth},
	}
	for _, h := range c.opts.Hosts {
		if ip := net.ParseIP(h); ip != nil {
			tmpl.IPAddresses = append(tmpl.IPAddresses, ip)
		} else {
			tmpl.DNSNames = append(tmpl.DNSNames, h)
		}
	}
	der, err := sign(tmpl, ca, key.Public(), caKey)
	if err != nil {
		return err
	}
	bundle := pemBlock("CERTIFICATE", caDER)
	for _, old := range parseCerts(sec.Data[secretCABundle]) {
		if old.IsCA && now.Before(old.NotAfter) && len(bundle) < 64<<10 {
			bundle = append(bundle, pemBlock("CERTIFICATE", old.Raw)...)
		}
	}
	keyDER, err := x509.MarshalPKCS8PrivateKey(key)
	if err != nil {
		return err
	}
	sec.Data = map[string][]byte{
		secretCABundle: bundle,
		secretCert:     pemBlock("CERTIFICATE", der),
		secretKey:      pemBlock("PRIVATE KEY", keyDER),
	}
	return nil
}

// ensureCABundle sets every webhook's caBundle in the configuration to bundle.
func (c *Certs) ensureCABundle(ctx context.Context, bundle []byte) error {
	api := c.client.AdmissionregistrationV1().MutatingWebhookConfigurations()
	cfg, err := api.Get(ctx, c.opts.WebhookConfig, metav1.GetOptions{})
	if err != nil {
		return err
	}
	changed := false
	for i := range cfg.Webhooks {
		if !bytes.Equal(cfg.Webhooks[i].ClientConfig.CABundle, bundle) {
			cfg.Webhooks[i].ClientConfig.CABundle = slices.Clone(bundle)
			changed = true
		}
	}
	if !changed {
		return nil
	}
	_, err = api.Update(ctx, cfg, metav1.UpdateOptions{})
	if err == nil {
		c.log.Info("updated the webhook configuration's caBundle", "config", c.opts.WebhookConfig)
	}
	return err
}

func sign(tmpl, parent *x509.Certificate, pub crypto.PublicKey, signer crypto.Signer) ([]byte, error) {
	serial, err := rand.Int(rand.Reader, new(big.Int).Lsh(big.NewInt(1), 127))
	if err != nil {
		return nil, err
	}
	tmpl.SerialNumber = serial
	return x509.CreateCertificate(rand.Reader, tmpl, parent, pub, signer)
}

func pemBlock(typ string, der []byte) []byte {
	return pem.EncodeToMemory(&pem.Block{Type: typ, Bytes: der})
}

func parseCerts(raw []byte) []*x509.Certificate {
	var out []*x509.Certificate
	for {
		var b *pem.Block
		b, raw = pem.Decode(raw)
		if b == nil {
			return out
		}
		if c, err := x509.ParseCertificate(b.Bytes); err == nil && b.Type == "CERTIFICATE" {
			out = append(out, c)
		}
	}
}
