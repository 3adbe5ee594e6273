package digest

import (
	"crypto/sha1"
	"crypto/sha256"
	"encoding/hex"
	"strings"
	"testing"

	"github.com/stretchr/testify/require"
)

// FIPS 180-4's example vectors, and lengths around the padding's block
// boundaries (55, 56, 63, 64 bytes), where an off-by-one would show.
func TestKnownDigests(t *testing.T) {
	tests := []struct {
		name, msg, sha1, sha256 string
	}{
		{"Empty", "",
			"da39a3ee5e6b4b0d3255bfef95601890afd80709",
			"e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855"},
		{"ABC", "abc",
			"a9993e364706816aba3e25717850c26c9cd0d89d",
			"ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad"},
		{"TwoBlocks", "abcdbcdecdefdefgefghfghighijhijkijkljklmklmnlmnomnopnopq",
			"84983e441c3bd26ebaae4aa1f95129e5e54670f1",
			"248d6a61d20638b8e5c026930c3e6039a33ce45964ff2167f6ecedd419db06c1"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			s1, s256 := SHA1([]byte(tt.msg)), SHA256([]byte(tt.msg))
			require.Equal(t, tt.sha1, hex.EncodeToString(s1[:]))
			require.Equal(t, tt.sha256, hex.EncodeToString(s256[:]))
		})
	}
}

func TestEveryLengthAgreesWithCrypto(t *testing.T) {
	// Lengths 0..300 cover padding into one and two extra blocks.
	msg := []byte(strings.Repeat("cgsem\x00\xff", 50))
	for n := range 301 {
		require.Equal(t, sha1.Sum(msg[:n]), SHA1(msg[:n]), "SHA-1 of %d bytes", n)
		require.Equal(t, sha256.Sum256(msg[:n]), SHA256(msg[:n]), "SHA-256 of %d bytes", n)
	}
}

func FuzzAgreesWithCrypto(f *testing.F) {
	f.Add([]byte(""))
	f.Add([]byte("abc"))
	f.Add(make([]byte, 64))
	f.Fuzz(func(t *testing.T, msg []byte) {
		if SHA1(msg) != sha1.Sum(msg) || SHA256(msg) != sha256.Sum256(msg) {
			t.Fatalf("digest of %x differs from crypto's", msg)
		}
	})
}
