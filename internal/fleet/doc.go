// Package fleet lets several pqedge nodes behind one anycast address act
// as one server, through a shared Redis or Valkey store: one ACME account
// and certificate per name for the whole fleet (Storage, a
// certmagic.Storage with fleet-wide locks), and session-ticket keys every
// node can open (TicketSource, a tickets.Source), so a visitor resumes on
// whichever node the network hands it to.
//
// It is not in the handshake path and not a session cache: the Keeper
// (package tickets) asks TicketSource for keys from its own refresh
// goroutine, and certmagic uses Storage from its ACME jobs. A store
// outage therefore costs no handshake: nodes keep the keys and
// certificates they have, and converge when the store is back.
//
// # Sealing
//
// Every value written (certmagic's private keys, certificates, account
// and challenge data, and the ticket keys) is sealed with
// XChaCha20-Poly1305 under the fleet encryption key (Key, from
// encryption_key_file, made by `pqedge fleet keygen`), with the value's
// key in the store as associated data: the store never holds a plaintext
// private key, and a value copied to another key does not open. Only lock
// tokens (a node id and a random number) are stored in the clear.
//
// # Keys in the store
//
// Under the key prefix (DefaultKeyPrefix, "pqedge:"):
//
//	acme:KEY       a certmagic value, sealed
//	acme-index     sorted set of certmagic keys (score 0, for ranges)
//	acme-modified  hash: certmagic key -> modification time (Unix ms)
//	lock:NAME      a lock's token, with the lease as its expiry
//	tickets        the ticket-key state, sealed
//
// # Use
//
// Settings.Options reads the files a [fleet] table names; New makes a
// Fleet without touching the network; Fleet.Storage goes to
// certs/acme.Options.Storage (with Fleet.LocalCache as its LocalCache),
// Fleet.Tickets to the Keeper; Fleet.Status
// feeds metrics and the admin page; Close releases locks and connections.
package fleet
