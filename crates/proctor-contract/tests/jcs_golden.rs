//! RFC 8785 golden vectors, checked in under `tests/golden/jcs.json`.

// Every test target of the package shares its dependencies; each uses some.
#![allow(unused_crate_dependencies)]

use proctor_contract::canonical_json;
use serde_json::Value;

fn golden() -> Value {
    serde_json::from_str(include_str!("golden/jcs.json")).expect("golden file is JSON")
}

#[test]
fn documents_canonicalize_as_rfc8785_says() {
    let golden = golden();
    let documents = golden["documents"].as_array().unwrap();
    assert!(documents.len() >= 3);
    for case in documents {
        let input: Value = serde_json::from_str(case["input"].as_str().unwrap()).unwrap();
        assert_eq!(
            canonical_json(&input),
            case["canonical"].as_str().unwrap(),
            "{}",
            case["name"]
        );
    }
}

#[test]
fn numbers_serialize_as_ecmascript_does() {
    let golden = golden();
    let numbers = golden["numbers"].as_array().unwrap();
    assert!(numbers.len() >= 10);
    for case in numbers {
        let bits = u64::from_str_radix(case["bits"].as_str().unwrap(), 16).unwrap();
        let value = Value::from(f64::from_bits(bits));
        assert_eq!(
            canonical_json(&value),
            case["canonical"].as_str().unwrap(),
            "bits {bits:016x}"
        );
    }
}
