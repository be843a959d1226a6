//! The CIFAR-10 batch parser: a file is read iff it is a whole, non-zero number of
//! 3073-byte records with labels 0..=9, and then exactly its records come back.
use super::{damaged, damages, fuzz};
use proptest::prelude::*;
use std::path::Path;
use transfer_lab::data::cifar::{parse_batch, RECORD_BYTES};

fn records() -> impl Strategy<Value = Vec<(u8, u8)>> {
    // (label, fill byte); labels mostly valid so that damage decides.
    proptest::collection::vec((prop_oneof![9 => 0..10u8, 1 => any::<u8>()], any::<u8>()), 0..6)
}

fn bytes_of(records: &[(u8, u8)]) -> Vec<u8> {
    let mut out = Vec::new();
    for (i, &(label, fill)) in records.iter().enumerate() {
        out.push(label);
        out.extend((0..RECORD_BYTES - 1).map(|p| fill.wrapping_add((p % 251) as u8).wrapping_add(i as u8)));
    }
    out
}

fn check(bytes: &[u8]) -> Result<(), TestCaseError> {
    let path = Path::new("fuzz/data_batch_1.bin");
    let valid =
        !bytes.is_empty() && bytes.len() % RECORD_BYTES == 0 && bytes.chunks_exact(RECORD_BYTES).all(|r| r[0] < 10);
    match parse_batch(bytes, path) {
        Ok((images, labels)) => {
            prop_assert!(valid, "a bad file was read");
            let n = (bytes.len() / RECORD_BYTES) as i64;
            prop_assert_eq!(images.size(), vec![n, 3, 32, 32]);
            let want: Vec<i64> = bytes.chunks_exact(RECORD_BYTES).map(|r| r[0] as i64).collect();
            prop_assert_eq!(Vec::<i64>::try_from(&labels).unwrap(), want);
            let pixels: Vec<u8> = bytes.chunks_exact(RECORD_BYTES).flat_map(|r| r[1..].to_vec()).collect();
            prop_assert_eq!(Vec::<u8>::try_from(&images.flatten(0, -1)).unwrap(), pixels);
        }
        Err(e) => {
            prop_assert!(!valid, "a good file was refused: {e}");
            super::names_path(&e, path)?;
        }
    }
    Ok(())
}

#[test]
fn cifar_batches_damaged_or_noise() {
    fuzz("cifar", 160, (records(), proptest::option::of(damages())), |(recs, dmg)| {
        let bytes = bytes_of(&recs);
        check(&match dmg {
            Some(d) => damaged(bytes, &d),
            None => bytes,
        })
    });
    fuzz("cifar-noise", 160, proptest::collection::vec(any::<u8>(), 0..8000), |bytes| check(&bytes));
}
