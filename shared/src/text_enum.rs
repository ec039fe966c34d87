//! Record states as enums, each stored as its lower-case name in a TEXT column on both
//! backends. [`text_enum!`] gives an enum its names, `FromStr`, serde and sqlx impls, so a
//! state is spelled once; SQL that names a state in its text binds it instead.

/// Declares an enum whose variants are stored and serialized by the names given.
#[macro_export]
macro_rules! text_enum {
    (
        $(#[$meta:meta])*
        pub enum $name:ident {
            $( $(#[$vmeta:meta])* $variant:ident = $text:literal, )+
        }
    ) => {
        $(#[$meta])*
        #[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
        pub enum $name {
            $( $(#[$vmeta])* $variant, )+
        }

        impl $name {
            pub const ALL: [$name; [$($text),+].len()] = [$($name::$variant),+];

            pub const fn as_str(self) -> &'static str {
                match self {
                    $( Self::$variant => $text, )+
                }
            }
        }

        impl ::std::fmt::Display for $name {
            fn fmt(&self, f: &mut ::std::fmt::Formatter<'_>) -> ::std::fmt::Result {
                f.write_str(self.as_str())
            }
        }

        impl ::std::str::FromStr for $name {
            type Err = String;
            fn from_str(s: &str) -> Result<Self, String> {
                match s {
                    $( $text => Ok(Self::$variant), )+
                    _ => Err(format!("one of {}", [$($text),+].join(", "))),
                }
            }
        }

        impl ::serde::Serialize for $name {
            fn serialize<S: ::serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
                s.serialize_str(self.as_str())
            }
        }

        impl<'de> ::serde::Deserialize<'de> for $name {
            fn deserialize<D: ::serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
                let s = <::std::borrow::Cow<'de, str>>::deserialize(d)?;
                s.parse().map_err(::serde::de::Error::custom)
            }
        }

        impl<DB: ::sqlx::Database> ::sqlx::Type<DB> for $name
        where
            str: ::sqlx::Type<DB>,
        {
            fn type_info() -> DB::TypeInfo {
                <str as ::sqlx::Type<DB>>::type_info()
            }
            fn compatible(ty: &DB::TypeInfo) -> bool {
                <str as ::sqlx::Type<DB>>::compatible(ty)
            }
        }

        impl<'q, DB: ::sqlx::Database> ::sqlx::Encode<'q, DB> for $name
        where
            &'static str: ::sqlx::Encode<'q, DB>,
        {
            fn encode_by_ref(
                &self,
                buf: &mut <DB as ::sqlx::Database>::ArgumentBuffer,
            ) -> Result<::sqlx::encode::IsNull, ::sqlx::error::BoxDynError> {
                <&'static str as ::sqlx::Encode<'q, DB>>::encode(self.as_str(), buf)
            }
        }

        impl<'r, DB: ::sqlx::Database> ::sqlx::Decode<'r, DB> for $name
        where
            &'r str: ::sqlx::Decode<'r, DB>,
        {
            fn decode(
                value: <DB as ::sqlx::Database>::ValueRef<'r>,
            ) -> Result<Self, ::sqlx::error::BoxDynError> {
                let text = <&'r str as ::sqlx::Decode<'r, DB>>::decode(value)?;
                text.parse()
                    .map_err(|e: String| format!("{}: {text:?} is not {e}", stringify!($name)).into())
            }
        }
    };
}

/// sqlx `Type`/`Encode`/`Decode` for a value stored as TEXT through a `String`:
/// `string_column!(Type, |v| text_of_v, |s| value_from_s)`.
#[macro_export]
macro_rules! string_column {
    ($name:ty, |$v:ident| $to:expr, |$s:ident| $from:expr) => {
        impl<DB: ::sqlx::Database> ::sqlx::Type<DB> for $name
        where
            String: ::sqlx::Type<DB>,
        {
            fn type_info() -> DB::TypeInfo {
                <String as ::sqlx::Type<DB>>::type_info()
            }
            fn compatible(ty: &DB::TypeInfo) -> bool {
                <String as ::sqlx::Type<DB>>::compatible(ty)
            }
        }

        impl<'q, DB: ::sqlx::Database> ::sqlx::Encode<'q, DB> for $name
        where
            String: ::sqlx::Encode<'q, DB>,
        {
            fn encode_by_ref(
                &self,
                buf: &mut <DB as ::sqlx::Database>::ArgumentBuffer,
            ) -> Result<::sqlx::encode::IsNull, ::sqlx::error::BoxDynError> {
                let $v = self;
                <String as ::sqlx::Encode<'q, DB>>::encode_by_ref($to, buf)
            }
        }

        impl<'r, DB: ::sqlx::Database> ::sqlx::Decode<'r, DB> for $name
        where
            String: ::sqlx::Decode<'r, DB>,
        {
            fn decode(
                value: <DB as ::sqlx::Database>::ValueRef<'r>,
            ) -> Result<Self, ::sqlx::error::BoxDynError> {
                let $s = <String as ::sqlx::Decode<'r, DB>>::decode(value)?;
                Ok($from)
            }
        }
    };
}

#[cfg(test)]
mod tests {
    use crate::{
        pidms::{BatchStatus, RunStatus},
        sikka::{TokenStatus, WritebackStatus},
        webhooks::DeliveryStatus,
    };

    /// The quoted words compared with `column` (`= 'x'`, `<> 'x'`, `IN ('x', 'y')`) in `sql`.
    fn literals_of<'a>(sql: &'a str, column: &str) -> Vec<&'a str> {
        let mut out = Vec::new();
        let mut rest = sql;
        while let Some(at) = rest.find(column) {
            let before = rest[..at].chars().next_back();
            rest = &rest[at + column.len()..];
            if before.is_some_and(|c| c.is_ascii_alphanumeric() || c == '_') {
                continue; // part of a longer name (`token_status` when looking for `status`)
            }
            let tail = rest.trim_start();
            let tail = ["=", "<>", "IN"].iter().find_map(|op| tail.strip_prefix(op));
            let Some(tail) = tail.map(str::trim_start) else { continue };
            let list = match tail.strip_prefix('(') {
                Some(inner) => &inner[..inner.find(')').unwrap_or(inner.len())],
                None => {
                    &tail
                        [..tail.find(|c: char| c.is_whitespace() || c == ')').unwrap_or(tail.len())]
                }
            };
            out.extend(
                list.split(',')
                    .map(str::trim)
                    .filter_map(|w| w.strip_prefix('\'')?.strip_suffix('\'')),
            );
        }
        out
    }

    #[test]
    fn every_state_the_sql_names_is_a_state_of_its_record() {
        let names = |all: &[&'static str]| all.to_vec();
        let delivery = names(&DeliveryStatus::ALL.map(|s| s.as_str()));
        let mut runs = names(&RunStatus::ALL.map(|s| s.as_str()));
        runs.extend(BatchStatus::ALL.map(|s| s.as_str()));
        let writeback = names(&WritebackStatus::ALL.map(|s| s.as_str()));
        let token = names(&TokenStatus::ALL.map(|s| s.as_str()));
        let cases: [(&str, &str, &str, &[&str]); 5] = [
            (
                "webhooks/store/deliveries.rs",
                include_str!("webhooks/store/deliveries.rs"),
                "status",
                &delivery,
            ),
            (
                "webhooks/store/endpoints.rs",
                include_str!("webhooks/store/endpoints.rs"),
                "status",
                &delivery,
            ),
            ("pidms/store/runs.rs", include_str!("pidms/store/runs.rs"), "status", &runs),
            ("sikka/store.rs", include_str!("sikka/store.rs"), "status", &writeback),
            ("sikka/store.rs", include_str!("sikka/store.rs"), "token_status", &token),
        ];
        let mut seen = 0;
        for (file, sql, column, allowed) in cases {
            for word in literals_of(sql, column) {
                assert!(
                    allowed.contains(&word),
                    "{file}: {column} '{word}' is not one of {allowed:?}"
                );
                seen += 1;
            }
        }
        assert!(
            seen >= 30,
            "the scan found only {seen} state literals: is it still reading the SQL?"
        );
        assert_eq!(
            literals_of("x status IN ('a', 'b') AND token_status = 'c'", "status"),
            ["a", "b"]
        );
    }

    #[test]
    fn names_read_back_and_unknown_ones_are_refused_by_name() {
        for s in WritebackStatus::ALL {
            assert_eq!(s.as_str().parse::<WritebackStatus>(), Ok(s));
            assert_eq!(serde_json::to_value(s).unwrap(), s.as_str());
        }
        assert_eq!(
            "done".parse::<WritebackStatus>().unwrap_err(),
            "one of queued, submitted, pending, completed, failed"
        );
        let back: TokenStatus = serde_json::from_str("\"reauthorization_required\"").unwrap();
        assert_eq!(back, TokenStatus::ReauthorizationRequired);
    }
}
