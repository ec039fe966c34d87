//! How a setting is declared: once, with its name, type, default, environment variable,
//! bounds and doc. [`settings!`] turns that declaration into the section's struct, its
//! `Default`, the environment overlay, the bounds check and the table the README prints.

use std::{fmt, net::SocketAddr, path::PathBuf};

use super::{ConfigError, LogFormat};
use crate::{queue::QueueName, secret::Secret};

/// One declared setting, as the README's table shows it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SettingInfo {
    /// The environment variable.
    pub env: &'static str,
    /// Its key in the TOML file (`webhooks.timeout_ms`).
    pub key: String,
    /// The default, as it would be written in the variable (empty: unset).
    pub default: &'static str,
    /// The doc comment, joined into one line.
    pub doc: String,
}

/// A group of settings: a struct [`settings!`] declared (or a hand-written one such as the
/// schedules, whose variables come from the schedule list).
pub trait Section {
    /// Overlays the variables `env` knows on what the defaults and the file gave.
    fn apply_env(&mut self, env: &dyn Fn(&str) -> Option<String>) -> Result<(), ConfigError>;
    /// The first value outside its declared bounds, by its variable's name.
    fn check(&self) -> Result<(), ConfigError>;
    /// Every declared setting of this section and the sections inside it.
    fn describe(prefix: &str, out: &mut Vec<SettingInfo>);
}

/// A value a variable (or a declared default) can spell. Surrounding blanks are ignored;
/// for optional values an empty string means unset.
pub trait Setting: Sized {
    fn parse_setting(raw: &str) -> Result<Self, String>;
}

macro_rules! from_str_settings {
    ($($ty:ty),* $(,)?) => {$(
        impl Setting for $ty {
            fn parse_setting(raw: &str) -> Result<Self, String> {
                raw.trim().parse().map_err(|e: <$ty as std::str::FromStr>::Err| e.to_string())
            }
        }
    )*};
}
from_str_settings!(u32, u64, usize, i64, bool, String, SocketAddr, PathBuf, LogFormat);

impl Setting for Option<String> {
    fn parse_setting(raw: &str) -> Result<Self, String> {
        let raw = raw.trim();
        Ok((!raw.is_empty()).then(|| raw.to_owned()))
    }
}

impl Setting for Option<PathBuf> {
    fn parse_setting(raw: &str) -> Result<Self, String> {
        Ok(Option::<String>::parse_setting(raw)?.map(PathBuf::from))
    }
}

impl Setting for Option<Secret<String>> {
    fn parse_setting(raw: &str) -> Result<Self, String> {
        Ok(Option::<String>::parse_setting(raw)?.map(Secret::new))
    }
}

impl Setting for Vec<QueueName> {
    fn parse_setting(raw: &str) -> Result<Self, String> {
        super::parse_queue_list(raw)
    }
}

/// Whole numbers, for the bounds below.
pub trait Whole: Copy + fmt::Display {
    fn wide(self) -> i128;
}
macro_rules! whole {
    ($($ty:ty),*) => {$( impl Whole for $ty { fn wide(self) -> i128 { self as i128 } } )*};
}
whole!(u32, u64, usize, i64);

/// No bound beyond the type.
pub fn any<T>(_: &T) -> Result<(), String> {
    Ok(())
}

pub fn positive<T: Whole>(v: &T) -> Result<(), String> {
    if v.wide() <= 0 {
        return Err("must be greater than zero".to_owned());
    }
    Ok(())
}

pub fn between<T: Whole>(lo: i128, hi: i128) -> impl Fn(&T) -> Result<(), String> {
    move |v| {
        if !(lo..=hi).contains(&v.wide()) {
            return Err(format!("must be between {lo} and {hi}"));
        }
        Ok(())
    }
}

pub fn at_least<T: Whole>(lo: i128, why: &'static str) -> impl Fn(&T) -> Result<(), String> {
    move |v| {
        if v.wide() < lo {
            return Err(format!("must be at least {lo} ({why})"));
        }
        Ok(())
    }
}

/// An absolute `http://` or `https://` URL.
pub fn http_url(v: &str) -> Result<(), String> {
    if !(v.starts_with("http://") || v.starts_with("https://")) {
        return Err("must be an http(s) URL".to_owned());
    }
    Ok(())
}

/// Declares a section of settings. Each line is
/// `/// doc` `name: Type = "default", "ENV_VAR", bound;` where the default is written as the
/// variable would be and `bound` is a function of `&Type` (see [`any`], [`positive`],
/// [`between`]). Sections nested in it follow in `@sections { name: Type, … }`.
macro_rules! settings {
    (
        $(#[$meta:meta])*
        pub struct $name:ident {
            $(
                $(#[doc = $doc:literal])*
                $field:ident : $ty:ty = $default:literal, $env:literal, $bound:expr;
            )*
            $(@sections {
                $( $(#[doc = $sdoc:literal])* $section:ident : $sty:ty ),* $(,)?
            })?
        }
    ) => {
        $(#[$meta])*
        #[derive(Debug, Clone, serde::Deserialize)]
        #[serde(default, deny_unknown_fields)]
        pub struct $name {
            $(
                $(#[doc = $doc])*
                #[doc = ""]
                #[doc = concat!("`", $env, "`, default `", $default, "`.")]
                pub $field: $ty,
            )*
            $($( $(#[doc = $sdoc])* pub $section: $sty, )*)?
        }

        impl Default for $name {
            fn default() -> Self {
                Self {
                    $($field: <$ty as $crate::config::Setting>::parse_setting($default)
                        .expect(concat!("the declared default of ", $env)),)*
                    $($($section: Default::default(),)*)?
                }
            }
        }

        impl $crate::config::Section for $name {
            fn apply_env(
                &mut self,
                env: &dyn Fn(&str) -> Option<String>,
            ) -> Result<(), $crate::config::ConfigError> {
                $(
                    if let Some(raw) = env($env) {
                        self.$field = <$ty as $crate::config::Setting>::parse_setting(&raw)
                            .map_err(|e| $crate::config::ConfigError::invalid($env, e))?;
                    }
                )*
                $($( self.$section.apply_env(env)?; )*)?
                Ok(())
            }

            fn check(&self) -> Result<(), $crate::config::ConfigError> {
                $(
                    ($bound)(&self.$field)
                        .map_err(|e: String| $crate::config::ConfigError::invalid($env, e))?;
                )*
                $($( self.$section.check()?; )*)?
                Ok(())
            }

            fn describe(prefix: &str, out: &mut Vec<$crate::config::SettingInfo>) {
                $(
                    let doc: &[&str] = &[$($doc),*];
                    out.push($crate::config::SettingInfo {
                        env: $env,
                        key: format!("{prefix}{}", stringify!($field)),
                        default: $default,
                        doc: doc.iter().map(|l| l.trim()).collect::<Vec<_>>().join(" "),
                    });
                )*
                $($(
                    <$sty as $crate::config::Section>::describe(
                        &format!("{prefix}{}.", stringify!($section)),
                        out,
                    );
                )*)?
            }
        }
    };
}
pub(crate) use settings;

/// The README's settings table: one row per declared setting, in declaration order.
pub fn markdown_table(settings: &[SettingInfo]) -> String {
    let mut out =
        String::from("| variable | file key | default | what it does |\n|---|---|---|---|\n");
    for s in settings {
        let default =
            if s.default.is_empty() { "unset".to_owned() } else { format!("`{}`", s.default) };
        out.push_str(&format!(
            "| `{}` | `{}` | {} | {} |\n",
            s.env,
            s.key,
            default,
            s.doc.replace('|', "\\|")
        ));
    }
    out
}
