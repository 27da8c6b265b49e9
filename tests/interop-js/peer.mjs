// A js-libp2p peer that dials an offgrid-node, waits for its signed announcement on
// gossipsub and verifies it the way a non-Rust client would.
//
//   node peer.mjs <multiaddr> <expected-peer-id> [deadline-ms]
//
// Prints one JSON line and exits 0 only if an announcement from the expected node arrived,
// its Ed25519 signature verifies over the shipped bytes, its key is the node's peer id, and
// tampered copies (a flipped body bit, a flipped signature bit, the same bytes signed by
// another key) are all refused.
//
// The contract (behaviours/src/announce.rs): the wire message is JSON
// {"signed": b64(announcement JSON bytes), "sig": b64(64-byte Ed25519 signature over the type
// tag "offgrid/announcement/v1", a newline, then exactly those bytes), "public_key":
// b64(libp2p protobuf public key)}. A verifier checks the signature over the tag and the
// decoded bytes and only then parses them; it never re-encodes. The announcement's node_id must be the signer's peer id.

// First: it patches what Node 20 lacks before any libp2p module runs.
import './node20.mjs'

import { createPublicKey, generateKeyPairSync, sign, verify } from 'node:crypto'

import { gossipsub } from '@chainsafe/libp2p-gossipsub'
import { noise } from '@chainsafe/libp2p-noise'
import { yamux } from '@chainsafe/libp2p-yamux'
import { publicKeyFromProtobuf } from '@libp2p/crypto/keys'
import { identify } from '@libp2p/identify'
import { peerIdFromPublicKey, peerIdFromString } from '@libp2p/peer-id'
import { tcp } from '@libp2p/tcp'
import { multiaddr } from '@multiformats/multiaddr'
import { blake3 } from '@noble/hashes/blake3.js'
import { createLibp2p } from 'libp2p'

const TOPIC = 'offgrid/announce/1'
// Largest signed announcement the node accepts (announce::MAX_BYTES).
const MAX_BYTES = 16 * 1024
// DER prefix of an Ed25519 SubjectPublicKeyInfo; the 32 raw key bytes follow it.
const ED25519_SPKI_PREFIX = Buffer.from('302a300506032b6570032100', 'hex')
// libp2p protobuf header of an Ed25519 public key: field 1 (type) = 1, field 2 (data), 32 bytes.
const ED25519_PROTOBUF_PREFIX = Buffer.from('08011220', 'hex')

/**
 * The node's gossip message id (net/src/behaviour.rs `content_message_id`): BLAKE3 of the
 * topic's length (u64 little-endian), the topic and the payload, truncated to 20 bytes.
 * Messages are unsigned, so the content is the id; using the same function keeps IHAVE,
 * IWANT and IDONTWANT ids the same on both sides.
 */
function contentMessageId (msg) {
  const topic = Buffer.from(msg.topic, 'utf8')
  const len = Buffer.alloc(8)
  len.writeBigUInt64LE(BigInt(topic.length))
  return blake3(Buffer.concat([len, topic, msg.data])).subarray(0, 20)
}

/** Ed25519 verification with node's own crypto: the raw key wrapped as SPKI. */
// What an announcement signature covers before the bytes (domain separation).
const ANNOUNCEMENT_TAG = Buffer.from('offgrid/announcement/v1\n')

/** The message signed for announcement bytes: the tag line, then the bytes. */
function signedMessage (bytes) {
  return Buffer.concat([ANNOUNCEMENT_TAG, bytes])
}

function ed25519Verify (rawKey, bytes, sig) {
  if (rawKey.length !== 32 || sig.length !== 64) return false
  const key = createPublicKey({
    key: Buffer.concat([ED25519_SPKI_PREFIX, rawKey]),
    format: 'der',
    type: 'spki'
  })
  return verify(null, bytes, key, sig)
}

/**
 * Verifies a wire announcement (parsed JSON object) against the node we expect; returns
 * { ok: true, ann, signer } or { ok: false, reason }.
 */
function verifyAnnouncement (wire, expectedPeerId) {
  if (typeof wire?.signed !== 'string' || typeof wire?.sig !== 'string' ||
      typeof wire?.public_key !== 'string') {
    return { ok: false, reason: 'malformed' }
  }
  const bytes = Buffer.from(wire.signed, 'base64')
  const sig = Buffer.from(wire.sig, 'base64')
  const pkProto = Buffer.from(wire.public_key, 'base64')
  if (bytes.length > MAX_BYTES) return { ok: false, reason: 'too large' }
  if (pkProto.length !== 36 || !pkProto.subarray(0, 4).equals(ED25519_PROTOBUF_PREFIX)) {
    return { ok: false, reason: 'not an Ed25519 key' }
  }
  const raw = pkProto.subarray(4)
  if (!ed25519Verify(raw, signedMessage(bytes), sig)) return { ok: false, reason: 'bad signature' }
  // The peer id is derived by libp2p's own code from the key, not by hand.
  const signer = peerIdFromPublicKey(publicKeyFromProtobuf(pkProto)).toString()
  let ann
  try {
    ann = JSON.parse(bytes.toString('utf8'))
  } catch {
    return { ok: false, reason: 'body is not JSON' }
  }
  if (ann.node_id !== signer) return { ok: false, reason: 'node_id is not the signer' }
  if (signer !== expectedPeerId) return { ok: false, reason: 'signer is not the expected node' }
  return { ok: true, ann, signer }
}

/** Copies of a good announcement that must not verify. */
function tamperedCopies (wire) {
  const bytes = Buffer.from(wire.signed, 'base64')
  const sig = Buffer.from(wire.sig, 'base64')
  // One flipped bit in the signed body (inside the JSON, so it may even still parse).
  const body = Buffer.from(bytes)
  body[Math.floor(body.length / 2)] ^= 0x01
  const badSig = Buffer.from(sig)
  badSig[0] ^= 0x01
  // The same bytes, correctly signed by another key: the signature verifies, the signer
  // is not the node.
  const { publicKey, privateKey } = generateKeyPairSync('ed25519')
  const otherRaw = publicKey.export({ format: 'der', type: 'spki' }).subarray(ED25519_SPKI_PREFIX.length)
  return {
    body: { ...wire, signed: body.toString('base64') },
    signature: { ...wire, sig: badSig.toString('base64') },
    foreign_key: {
      signed: wire.signed,
      sig: sign(null, signedMessage(bytes), privateKey).toString('base64'),
      public_key: Buffer.concat([ED25519_PROTOBUF_PREFIX, otherRaw]).toString('base64')
    }
  }
}

function finish (result, code) {
  process.stdout.write(JSON.stringify(result) + '\n')
  process.exit(code)
}

async function main () {
  const [addrText, expected, deadlineText] = process.argv.slice(2)
  if (addrText == null || expected == null) {
    finish({ ok: false, error: 'usage: node peer.mjs <multiaddr> <expected-peer-id> [deadline-ms]' }, 2)
  }
  const deadlineMs = Number(deadlineText ?? 20000)
  const started = Date.now()
  const expectedId = peerIdFromString(expected)

  const libp2p = await createLibp2p({
    // Dial only: the node never needs to reach us.
    addresses: { listen: [] },
    transports: [tcp()],
    connectionEncrypters: [noise()],
    streamMuxers: [yamux()],
    services: {
      // js gossipsub learns from identify that the node speaks /meshsub/*.
      identify: identify(),
      pubsub: gossipsub({
        // The node publishes with MessageAuthenticity::Anonymous: no from, seqno, key or
        // signature in the envelope. StrictNoSign accepts exactly those (and would refuse
        // signed ones); authenticity comes from the announcement's own signature.
        globalSignaturePolicy: 'StrictNoSign',
        msgIdFn: contentMessageId,
        emitSelf: false
      })
    }
  })

  const received = new Promise((resolve) => {
    libp2p.services.pubsub.addEventListener('gossipsub:message', (evt) => {
      const { propagationSource, msgId, msg } = evt.detail
      if (msg.topic !== TOPIC) return
      let wire
      try {
        wire = JSON.parse(Buffer.from(msg.data).toString('utf8'))
      } catch {
        return
      }
      const v = verifyAnnouncement(wire, expected)
      // Another node's announcement (none here) or a bad one: keep waiting for ours.
      if (!v.ok && v.reason === 'signer is not the expected node') return
      resolve({ propagationSource, msgId, msg, wire, v })
    })
  })
  libp2p.services.pubsub.subscribe(TOPIC)

  let timer
  const deadline = new Promise((resolve) => {
    timer = setTimeout(() => resolve(null), deadlineMs)
  })
  try {
    const conn = await Promise.race([libp2p.dial(multiaddr(addrText)), deadline])
    if (conn == null) throw new Error(`could not dial ${addrText} within ${deadlineMs} ms`)
    if (!conn.remotePeer.equals(expectedId)) {
      throw new Error(`dialled ${conn.remotePeer}, expected ${expected}`)
    }
    const got = await Promise.race([received, deadline])
    if (got == null) throw new Error(`no announcement from ${expected} within ${deadlineMs} ms`)
    const { propagationSource, msgId, msg, wire, v } = got
    const tampered = {}
    for (const [name, copy] of Object.entries(tamperedCopies(wire))) {
      const t = verifyAnnouncement(copy, expected)
      tampered[name] = t.ok ? 'accepted' : t.reason
    }
    const tamperedRejected = Object.values(tampered).every((r) => r !== 'accepted')
    const result = {
      ok: v.ok && tamperedRejected,
      received: true,
      unsigned_envelope: msg.type === 'unsigned',
      from: propagationSource.toString(),
      signature_valid: v.ok,
      reason: v.ok ? undefined : v.reason,
      signer: v.signer,
      node_id: v.ann?.node_id,
      seq: v.ann?.seq,
      tampered_rejected: tamperedRejected,
      tampered,
      msg_id: Buffer.from(msgId, 'base64').toString('hex'),
      wire: Buffer.from(msg.data).toString('base64'),
      elapsed_ms: Date.now() - started
    }
    clearTimeout(timer)
    await libp2p.stop()
    finish(result, result.ok ? 0 : 1)
  } catch (e) {
    clearTimeout(timer)
    await libp2p.stop().catch(() => {})
    finish({ ok: false, received: false, error: String(e?.message ?? e), elapsed_ms: Date.now() - started }, 1)
  }
}

main().catch((e) => finish({ ok: false, error: String(e?.stack ?? e) }, 1))
