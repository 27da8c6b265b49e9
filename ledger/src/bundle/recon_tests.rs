use super::*;

fn ids(range: std::ops::Range<u32>) -> Vec<Id> {
    let mut v: Vec<Id> = range
        .map(|i| *blake3::hash(&i.to_le_bytes()).as_bytes())
        .collect();
    v.sort_unstable();
    v
}

/// Runs a whole reconciliation; returns (what a lacks, what b lacks, rounds, ids sent).
fn run(a: &[Id], b: &[Id]) -> (Vec<Id>, Vec<Id>, usize, usize) {
    let (mut need_a, mut need_b) = (Vec::new(), Vec::new());
    let mut msg = initiate(a);
    let mut rounds = 1;
    let mut sent = 0;
    let mut turn_b = true;
    loop {
        sent += msg
            .ranges
            .iter()
            .map(|r| match &r.mode {
                Mode::List(l) | Mode::Have(l) => l.len(),
                _ => 1,
            })
            .sum::<usize>();
        let (side, need) = if turn_b {
            (b, &mut need_b)
        } else {
            (a, &mut need_a)
        };
        let was_done = msg.is_done();
        let (reply, learnt) = respond(side, &msg).unwrap();
        need.extend(learnt);
        if was_done {
            break;
        }
        msg = reply;
        rounds += 1;
        turn_b = !turn_b;
        assert!(rounds <= MAX_ROUNDS, "did not converge");
    }
    need_a.sort_unstable();
    need_b.sort_unstable();
    (need_a, need_b, rounds, sent)
}

#[test]
fn equal_sets_agree_in_one_round_trip() {
    let a = ids(0..5000);
    let (na, nb, rounds, _) = run(&a, &a);
    assert!(na.is_empty() && nb.is_empty());
    assert!(rounds <= 2, "rounds {rounds}");
}

#[test]
fn small_differences_are_found_without_sending_everything() {
    let all = ids(0..5000);
    let a: Vec<Id> = all
        .iter()
        .enumerate()
        .filter(|(i, _)| i % 1000 != 7)
        .map(|(_, x)| *x)
        .collect();
    let b: Vec<Id> = all
        .iter()
        .enumerate()
        .filter(|(i, _)| i % 1000 != 500)
        .map(|(_, x)| *x)
        .collect();
    let (na, nb, rounds, sent) = run(&a, &b);
    let want_a: Vec<Id> = b
        .iter()
        .filter(|x| a.binary_search(x).is_err())
        .copied()
        .collect();
    let want_b: Vec<Id> = a
        .iter()
        .filter(|x| b.binary_search(x).is_err())
        .copied()
        .collect();
    assert_eq!(na, want_a);
    assert_eq!(nb, want_b);
    println!("5000 ids, 10 differences: {rounds} messages, {sent} range entries or ids sent");
    assert!(
        sent < all.len() / 2,
        "sent {sent} entries for 10 differences"
    );
    assert!(rounds <= MAX_ROUNDS);
}

#[test]
fn disjoint_and_empty_sets_reconcile() {
    let a = ids(0..40);
    let b = ids(100..130);
    let (na, nb, _, _) = run(&a, &b);
    assert_eq!(na, b);
    assert_eq!(nb, a);
    let (na, nb, _, _) = run(&[], &a);
    assert_eq!(na, a);
    assert!(nb.is_empty());
}

#[test]
fn hostile_messages_are_refused() {
    let ours = ids(0..10);
    let too_many = Message {
        ranges: (0..=MAX_RANGES)
            .map(|i| Range {
                upper: if i == MAX_RANGES {
                    Bound::End
                } else {
                    Bound::Id([i as u8; 32])
                },
                mode: Mode::Skip,
            })
            .collect(),
    };
    assert_eq!(respond(&ours, &too_many), Err(ReconError::TooManyRanges));
    let big = Message {
        ranges: vec![Range {
            upper: Bound::End,
            mode: Mode::List(vec![[1; 32]; MAX_IDS + 1]),
        }],
    };
    assert_eq!(respond(&ours, &big), Err(ReconError::TooManyIds));
    let unordered = Message {
        ranges: vec![
            Range {
                upper: Bound::Id([9; 32]),
                mode: Mode::Skip,
            },
            Range {
                upper: Bound::Id([3; 32]),
                mode: Mode::Skip,
            },
            Range {
                upper: Bound::End,
                mode: Mode::Skip,
            },
        ],
    };
    assert_eq!(respond(&ours, &unordered), Err(ReconError::BadBounds));
    let open = Message {
        ranges: vec![Range {
            upper: Bound::Id([9; 32]),
            mode: Mode::Skip,
        }],
    };
    assert_eq!(respond(&ours, &open), Err(ReconError::BadBounds));
    assert_eq!(
        respond(&ours, &Message::default()),
        Err(ReconError::BadBounds)
    );
    let outside = Message {
        ranges: vec![
            Range {
                upper: Bound::Id([9; 32]),
                mode: Mode::List(vec![[10; 32]]),
            },
            Range {
                upper: Bound::End,
                mode: Mode::Skip,
            },
        ],
    };
    assert_eq!(respond(&ours, &outside), Err(ReconError::IdOutOfRange));
    // Malformed JSON and bad hex never decode.
    assert!(serde_json::from_str::<Message>(
        r#"{"ranges":[{"upper":"End","mode":{"List":["zz"]}}]}"#
    )
    .is_err());
    assert!(serde_json::from_slice::<Message>(&[0xff; 64]).is_err());
}

#[test]
fn fingerprint_ignores_order_but_not_content() {
    let a = ids(0..50);
    let mut r = a.clone();
    r.reverse();
    assert_eq!(fingerprint(&a), fingerprint(&r));
    assert_ne!(fingerprint(&a), fingerprint(&a[1..]));
}
