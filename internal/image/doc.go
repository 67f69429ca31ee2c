// Package image builds pqedge's container image without a container
// runtime: it cross-compiles the static pqedge binary for every platform in
// [Platforms], lays each one into a single-layer, scratch-based image, and
// writes the multi-arch OCI image index as an OCI layout directory plus a
// `docker load` tarball of one platform (go-containerregistry writes both).
// `make image` runs it through internal/image/mkimage.
//
// It is not a general image builder: the file system is fixed (see
// [BinaryPath] and the constants beside it) and there is no base image,
// shell, libc or package manager.
//
// # What is in the image
//
// Only what the binary needs to run as a non-root user:
//
//	/usr/local/bin/pqedge          the binary (CGO_ENABLED=0, -trimpath)
//	/etc/pqedge/pqedge.toml        the default config (pqedge.toml in this
//	                               package); mount your own over it
//	/etc/passwd, /etc/group        root and pqedge (UID/GID 65532), so ps
//	                               and ls show a name
//	/var/lib/pqedge                the data volume (local CA, ACME state),
//	                               owned by pqedge, mode 0700
//	/tmp                           mode 1777, for os.TempDir
//
// CA roots are not files: cmd/pqedge embeds Mozilla's bundle
// (golang.org/x/crypto/x509roots/fallback), which crypto/x509 uses when the
// system has no roots, as in this image; `pqedge version` says which roots
// are in use. The image's HEALTHCHECK runs `pqedge health`, which asks the
// admin listener's /readyz.
//
// # Reproducibility
//
// Every timestamp in the layer and the config is [Options.Created], and
// files are written in a fixed order, so the same source, toolchain and
// Created give the same digests.
package image
