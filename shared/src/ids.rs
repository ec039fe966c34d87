//! Record ids: `<prefix>_<ULID>`, the prefix naming the record type, all in the one table
//! below. Each id type has one constructor, `generate` (a ULID, monotonic within the process,
//! so ids made together sort in the order they were made); ids read back from the store or
//! a request are taken as they are (rows from before a prefix existed keep their id).

use std::{fmt, sync::Mutex};

/// The next ULID of this process: monotonic, so a batch of events or deliveries sorts in the
/// order it was made.
pub(crate) fn next_ulid() -> ulid::Ulid {
    static IDS: Mutex<ulid::Generator> = Mutex::new(ulid::Generator::new());
    let mut ids = IDS.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
    ids.generate().unwrap_or_else(|_| ulid::Ulid::generate())
}

macro_rules! id_types {
    ($( $(#[$meta:meta])* $name:ident = $prefix:literal; )+) => {
        $(
            $(#[$meta])*
            #[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord, serde::Serialize, serde::Deserialize)]
            #[serde(transparent)]
            pub struct $name(String);

            impl $name {
                pub const PREFIX: &'static str = $prefix;

                /// A new id of this type.
                pub fn generate() -> Self {
                    Self(format!("{}_{}", $prefix, next_ulid()))
                }

                pub fn as_str(&self) -> &str {
                    &self.0
                }

                pub fn into_string(self) -> String {
                    self.0
                }
            }

            impl From<String> for $name {
                fn from(id: String) -> Self {
                    Self(id)
                }
            }

            impl From<&str> for $name {
                fn from(id: &str) -> Self {
                    Self(id.to_owned())
                }
            }

            impl From<$name> for String {
                fn from(id: $name) -> String {
                    id.0
                }
            }

            impl std::ops::Deref for $name {
                type Target = str;
                fn deref(&self) -> &str {
                    &self.0
                }
            }

            impl fmt::Display for $name {
                fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                    f.write_str(&self.0)
                }
            }

            $crate::string_column!($name, |v| &v.0, |s| Self(s));
        )+

        /// Every record type's id prefix.
        pub const PREFIXES: &[(&str, &str)] = &[$((stringify!($name), $prefix)),+];
    };
}

id_types! {
    /// A webhook endpoint.
    EndpointId = "ep";
    /// A published event.
    EventId = "evt";
    /// One delivery of an event to one endpoint (the Standard Webhooks `webhook-id`).
    DeliveryId = "msg";
    /// An API key (not the key itself: its record).
    ApiKeyId = "key";
    /// A Sikka practice.
    PracticeId = "sp";
    /// A Sikka writeback.
    WritebackId = "wb";
    /// A batch of a PIDMS run.
    PidmsBatchId = "pb";
    /// A canary run.
    CanaryRunId = "can";
    /// A tenant.
    TenantId = "tn";
    /// An audit log entry.
    AuditId = "aud";
}

/// A PIDMS run's id names its kind (`check_…`, `sync_…`).
pub fn pidms_run_id(kind: crate::pidms::RunKind) -> String {
    format!("{}_{}", kind.as_str(), next_ulid())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ids_carry_their_prefix_sort_in_order_and_prefixes_are_unique() {
        let a = EndpointId::generate();
        let b = EndpointId::generate();
        assert!(a.starts_with("ep_") && a.len() == 3 + 26, "{a}");
        assert!(a < b, "ids made one after the other sort in that order");
        assert_eq!(serde_json::to_value(&a).unwrap(), a.as_str());
        let mut prefixes: Vec<&str> = PREFIXES.iter().map(|(_, p)| *p).collect();
        prefixes.sort_unstable();
        prefixes.dedup();
        assert_eq!(prefixes.len(), PREFIXES.len(), "two record types share a prefix");
        assert!(pidms_run_id(crate::pidms::RunKind::Sync).starts_with("sync_"));
    }
}
