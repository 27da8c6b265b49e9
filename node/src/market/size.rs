//! Job sizes for token-billed work (LLM calls): the estimate a broker quotes with when a job
//! names no size, and the units a host bills from what the backend reports using.
//!
//! For these jobs a unit is one token: a host's price for `compute` is per token, and a
//! receipt's `units` (micro-units, as everywhere) are the backend's `usage.total_tokens` ×
//! 1,000,000. The Python client's `estimate_size` makes the same estimate: about four
//! characters a token for the prompt (the messages' contents joined by spaces), plus
//! `max_tokens` (256 when the payload names none, or 0) for the answer. The host bills the
//! backend's `usage.total_tokens`, never more than the units the broker quoted and its
//! payment order covers.

use serde_json::Value;

/// Micro-units per token: a unit is one token.
pub const MICRO_UNITS_PER_TOKEN: u64 = 1_000_000;

/// Answer tokens assumed when a payload names no `max_tokens`.
pub const DEFAULT_ANSWER_TOKENS: u64 = 256;

/// Largest `max_tokens` an estimate takes from a payload (bounds what one job can reserve).
pub const MAX_ANSWER_TOKENS: u64 = 1 << 20;

/// The estimated size in micro-units of an LLM-shaped payload (one with a `prompt` or
/// `messages`), or `None` for any other payload.
pub fn estimate_units(payload: &Value) -> Option<u64> {
    let prompt_chars = match (payload.get("prompt"), payload.get("messages")) {
        (Some(Value::String(p)), _) => p.chars().count(),
        (Some(Value::Array(parts)), _) => parts
            .iter()
            .filter_map(Value::as_str)
            .map(|p| p.chars().count())
            .sum(),
        (_, Some(Value::Array(messages))) => {
            let contents: Vec<usize> = messages
                .iter()
                .filter_map(|m| m.get("content").and_then(Value::as_str))
                .map(|c| c.chars().count())
                .collect();
            // Joined by single spaces.
            contents.iter().sum::<usize>() + contents.len().saturating_sub(1)
        }
        _ => return None,
    };
    let answer = payload
        .get("max_tokens")
        .and_then(Value::as_u64)
        .filter(|&t| t > 0)
        .unwrap_or(DEFAULT_ANSWER_TOKENS)
        .min(MAX_ANSWER_TOKENS);
    let tokens = (prompt_chars as u64)
        .div_ceil(4)
        .saturating_add(answer)
        .max(1);
    Some(tokens.saturating_mul(MICRO_UNITS_PER_TOKEN))
}

/// The units a host bills for `tokens` used, capped by the `quoted` units.
pub fn billed_units(tokens: u64, quoted: u64) -> u64 {
    tokens.saturating_mul(MICRO_UNITS_PER_TOKEN).min(quoted)
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    #[test]
    fn an_llm_payload_is_sized_from_its_prompt_and_answer_budget() {
        const T: u64 = MICRO_UNITS_PER_TOKEN;
        // "Test": 1 token of prompt, 256 of answer by default (as the Python client says).
        assert_eq!(estimate_units(&json!({"prompt": "Test"})), Some(257 * T));
        assert_eq!(
            estimate_units(&json!({"prompt": "Test", "max_tokens": 100})),
            Some(101 * T)
        );
        // Messages: their contents joined by spaces ("abc defg" is 8 characters).
        assert_eq!(
            estimate_units(&json!({"messages": [
                {"role": "system", "content": "abc"},
                {"role": "user", "content": "defg"}
            ], "max_tokens": 1})),
            Some(3 * T)
        );
        // Not an LLM call: no estimate (the caller keeps its default).
        assert_eq!(estimate_units(&json!({"k": 1})), None);
        assert_eq!(estimate_units(&json!("text")), None);
    }

    #[test]
    fn hostile_sizes_are_bounded() {
        // A huge max_tokens reserves at most MAX_ANSWER_TOKENS; nothing overflows.
        let huge = estimate_units(&json!({"prompt": "", "max_tokens": u64::MAX})).unwrap();
        assert_eq!(huge, MAX_ANSWER_TOKENS * MICRO_UNITS_PER_TOKEN);
        // A negative, zero or fractional max_tokens is not a count: the default applies.
        for bad in [json!(-5), json!(0), json!(2.5), json!("9")] {
            assert_eq!(
                estimate_units(&json!({"prompt": "", "max_tokens": bad})),
                Some(DEFAULT_ANSWER_TOKENS * MICRO_UNITS_PER_TOKEN)
            );
        }
        assert_eq!(billed_units(u64::MAX, 5_000), 5_000);
    }

    #[test]
    fn usage_is_billed_but_never_above_the_quote() {
        let quoted = 257 * MICRO_UNITS_PER_TOKEN;
        assert_eq!(billed_units(3, quoted), 3 * MICRO_UNITS_PER_TOKEN);
        assert_eq!(billed_units(300, quoted), quoted);
        assert_eq!(billed_units(0, quoted), 0);
    }
}
