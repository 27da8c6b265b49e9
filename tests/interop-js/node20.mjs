// Node 20 lacks Promise.withResolvers (added in Node 22), which it-queue (under libp2p's
// peer store) calls. Every version of it-queue does, and the peer store needs a mortice
// that uses it-queue, so the one missing function is supplied here, before libp2p loads.
if (typeof Promise.withResolvers !== 'function') {
  Promise.withResolvers = function withResolvers () {
    let resolve, reject
    const promise = new this((res, rej) => { resolve = res; reject = rej })
    return { promise, resolve, reject }
  }
}
