//! Unit tests of the broker.

use super::*;

#[test]
fn cached_quotes_hold_while_valid_and_capacity_remains() {
    let q = QuoteCache::default();
    q.put("h", "echo", 100, 1_000, 2);
    assert_eq!(q.get("h", "echo", 500), Some(100));
    assert_eq!(q.get("h", "compute", 500), None, "per job type");
    assert_eq!(q.get("h", "echo", 1_000), None, "expired");
    q.dispatched("h", "echo", true);
    q.dispatched("h", "echo", true);
    assert_eq!(
        q.get("h", "echo", 500),
        None,
        "our own jobs use up the capacity it quoted"
    );
    q.dispatched("h", "echo", false);
    assert_eq!(q.get("h", "echo", 500), Some(100));
    q.forget("h");
    assert_eq!(q.get("h", "echo", 500), None);
}
