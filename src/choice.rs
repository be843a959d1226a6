//! The library's choices (strategy, architecture, layer, normalisation, precision, ...)
//! are enums deriving clap's `ValueEnum`: one spelling each, shared by the command line
//! (`--help` lists the values, a typo is a parse error), `FromStr`, `Display` and `name()`.
use crate::{Error, Result};
use clap::ValueEnum;

/// The value's one spelling.
pub fn name_of<T: ValueEnum>(v: &T) -> String {
    v.to_possible_value().map(|p| p.get_name().to_string()).unwrap_or_default()
}

/// Parses `s` as one of `T`'s values (aliases included); the error names `what` and
/// lists the values.
pub fn parse_value<T: ValueEnum>(what: &str, s: &str, ignore_case: bool) -> Result<T> {
    T::from_str(s, ignore_case).map_err(|_| {
        let names: Vec<String> = T::value_variants().iter().map(name_of).collect();
        Error::invalid(what, format!("`{s}`; expected one of {}", names.join(", ")))
    })
}

/// `FromStr`, `Display` and `name()` from the `ValueEnum` derive. `FromStr` is
/// case-sensitive unless `ignore_case` follows.
macro_rules! choice {
    ($t:ty, $what:literal) => {
        $crate::choice::choice!($t, $what, false);
    };
    ($t:ty, $what:literal, ignore_case) => {
        $crate::choice::choice!($t, $what, true);
    };
    ($t:ty, $what:literal, $ignore_case:literal) => {
        impl $t {
            /// The one spelling, shared by the CLI, serde and file names.
            pub fn name(self) -> String {
                $crate::choice::name_of(&self)
            }
            /// Every value, in declaration order.
            pub fn all() -> &'static [$t] {
                <$t as clap::ValueEnum>::value_variants()
            }
        }
        impl std::str::FromStr for $t {
            type Err = $crate::Error;
            fn from_str(s: &str) -> $crate::Result<Self> {
                $crate::choice::parse_value($what, s, $ignore_case)
            }
        }
        impl std::fmt::Display for $t {
            fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                f.write_str(&self.name())
            }
        }
    };
}
pub(crate) use choice;
