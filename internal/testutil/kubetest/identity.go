package kubetest

import (
	"bufio"
	"bytes"
	"context"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"testing"

	authenticationv1 "k8s.io/api/authentication/v1"
	corev1 "k8s.io/api/core/v1"
	rbacv1 "k8s.io/api/rbac/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	utilyaml "k8s.io/apimachinery/pkg/util/yaml"
	"k8s.io/client-go/kubernetes/scheme"
	"k8s.io/client-go/rest"
	"k8s.io/client-go/tools/clientcmd"
	clientcmdapi "k8s.io/client-go/tools/clientcmd/api"
	"sigs.k8s.io/yaml"
)

// Namespace creates a namespace with a generated name. envtest runs no
// namespace controller, so it is not deleted afterwards; the control plane
// goes away with the test anyway.
func (e *Env) Namespace(t testing.TB) string {
	t.Helper()
	ns, err := e.Client.CoreV1().Namespaces().Create(context.Background(), &corev1.Namespace{
		ObjectMeta: metav1.ObjectMeta{GenerateName: "test-"},
	}, metav1.CreateOptions{})
	if err != nil {
		t.Fatalf("kubetest: creating namespace: %v", err)
	}
	return ns.Name
}

// ServiceAccount creates the service account name in namespace, applies the
// ServiceAccount, Role and RoleBinding objects in rbacFile there (whatever
// namespace the file says), and returns a config that authenticates as the
// account with a token from the TokenRequest API, so a test runs with
// exactly the permissions the file grants.
func (e *Env) ServiceAccount(t testing.TB, namespace, name, rbacFile string) *rest.Config {
	t.Helper()
	ctx := context.Background()
	_, err := e.Client.CoreV1().ServiceAccounts(namespace).Create(ctx, &corev1.ServiceAccount{
		ObjectMeta: metav1.ObjectMeta{Name: name},
	}, metav1.CreateOptions{})
	if err != nil {
		t.Fatalf("kubetest: creating service account: %v", err)
	}
	if rbacFile != "" {
		if err := e.apply(ctx, namespace, rbacFile); err != nil {
			t.Fatal(err)
		}
	}
	tr, err := e.Client.CoreV1().ServiceAccounts(namespace).CreateToken(ctx, name, &authenticationv1.TokenRequest{
		Spec: authenticationv1.TokenRequestSpec{ExpirationSeconds: new(int64(3600))},
	}, metav1.CreateOptions{})
	if err != nil {
		t.Fatalf("kubetest: requesting token: %v", err)
	}
	cfg := rest.AnonymousClientConfig(e.Config)
	cfg.BearerToken = tr.Status.Token
	return cfg
}

// apply creates the namespaced RBAC objects of a multi-document YAML file in
// namespace.
func (e *Env) apply(ctx context.Context, namespace, file string) error {
	f, err := os.Open(file)
	if err != nil {
		return fmt.Errorf("kubetest: %w", err)
	}
	defer f.Close()
	reader := utilyaml.NewYAMLReader(bufio.NewReader(f))
	for {
		doc, err := reader.Read()
		if err == io.EOF {
			return nil
		}
		if err != nil {
			return fmt.Errorf("kubetest: reading %s: %w", file, err)
		}
		if empty, err := isEmptyDoc(doc); err != nil {
			return fmt.Errorf("kubetest: %s: %w", file, err)
		} else if empty {
			continue
		}
		obj, _, err := scheme.Codecs.UniversalDeserializer().Decode(doc, nil, nil)
		if err != nil {
			return fmt.Errorf("kubetest: decoding %s: %w", file, err)
		}
		switch o := obj.(type) {
		case *corev1.ServiceAccount:
			o.Namespace = namespace
			_, err = e.Client.CoreV1().ServiceAccounts(namespace).Create(ctx, o, metav1.CreateOptions{})
			if apierrors.IsAlreadyExists(err) {
				err = nil
			}
		case *rbacv1.Role:
			o.Namespace = namespace
			_, err = e.Client.RbacV1().Roles(namespace).Create(ctx, o, metav1.CreateOptions{})
		case *rbacv1.RoleBinding:
			o.Namespace = namespace
			_, err = e.Client.RbacV1().RoleBindings(namespace).Create(ctx, o, metav1.CreateOptions{})
		default:
			return fmt.Errorf("kubetest: %s: unsupported kind %T", file, obj)
		}
		if err != nil {
			return fmt.Errorf("kubetest: applying %s: %w", file, err)
		}
	}
}

// isEmptyDoc reports whether a YAML document holds only comments.
func isEmptyDoc(doc []byte) (bool, error) {
	if len(bytes.TrimSpace(doc)) == 0 {
		return true, nil
	}
	var m map[string]any
	if err := yaml.Unmarshal(doc, &m); err != nil {
		return false, err
	}
	return len(m) == 0, nil
}

// WriteKubeconfig writes cfg, which must use a bearer token or client
// certificate data, as a kubeconfig file in the test's temporary folder and
// returns its path, for tests that start a binary with --kubeconfig.
func WriteKubeconfig(t testing.TB, cfg *rest.Config) string {
	t.Helper()
	kc := clientcmdapi.NewConfig()
	kc.Clusters["test"] = &clientcmdapi.Cluster{
		Server:                   cfg.Host,
		CertificateAuthorityData: cfg.CAData,
	}
	kc.AuthInfos["test"] = &clientcmdapi.AuthInfo{
		Token:                 cfg.BearerToken,
		ClientCertificateData: cfg.CertData,
		ClientKeyData:         cfg.KeyData,
	}
	kc.Contexts["test"] = &clientcmdapi.Context{Cluster: "test", AuthInfo: "test"}
	kc.CurrentContext = "test"
	path := filepath.Join(t.TempDir(), "kubeconfig")
	if err := clientcmd.WriteToFile(*kc, path); err != nil {
		t.Fatalf("kubetest: writing kubeconfig: %v", err)
	}
	return path
}
