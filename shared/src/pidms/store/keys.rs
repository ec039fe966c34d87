//! PIDMS keys and products: lookups, the search built from the filters given, keyset
//! export, and the per-product low-stock flags.

use chrono::{DateTime, Utc};
use serde::Serialize;

use crate::{
    on_pool,
    store::{Store, StoreError},
};

const KEY_COLUMNS: &str = "keyname, keyname_with_dash, prd, eid, is_key_type, is_retail, \
    remaining, blocked, errorcode, sub, had_occurred, invalid, datetime_checked_done, \
    checked_at, created_at, updated_at";

#[derive(Debug, Clone, sqlx::FromRow, Serialize)]
pub struct PidmsKey {
    pub keyname: String,
    pub keyname_with_dash: String,
    pub prd: Option<String>,
    pub eid: Option<String>,
    pub is_key_type: Option<String>,
    pub is_retail: Option<i64>,
    pub remaining: Option<i64>,
    pub blocked: Option<i64>,
    pub errorcode: Option<String>,
    pub sub: Option<String>,
    pub had_occurred: Option<i64>,
    pub invalid: Option<i64>,
    pub datetime_checked_done: Option<String>,
    pub checked_at: DateTime<Utc>,
    pub created_at: DateTime<Utc>,
    pub updated_at: DateTime<Utc>,
}

/// The search of `GET /pidms/keys`.
#[derive(Debug, Clone, Default)]
pub struct KeySearch {
    /// Case-insensitive substring of `prd`.
    pub product: Option<String>,
    pub min_remaining: Option<i64>,
    pub max_remaining: Option<i64>,
    pub blocked: Option<bool>,
}

#[derive(Debug, Clone, sqlx::FromRow, Serialize)]
pub struct ProductSummary {
    pub prd: String,
    pub key_count: i64,
    /// The sum of `remaining` over keys that count (retail keys report -1: not counted).
    pub total_remaining: i64,
    pub avg_remaining: f64,
}

/// `LOWER(col) LIKE LOWER($n) ESCAPE '\'` with `%` and `_` in the user's text escaped.
fn like_pattern(text: &str) -> String {
    let escaped: String = text
        .chars()
        .flat_map(|c| match c {
            '%' | '_' | '\\' => vec!['\\', c],
            c => vec![c],
        })
        .collect();
    format!("%{}%", escaped.to_lowercase())
}

/// A bind value of a search (the filters present decide how many there are).
#[derive(Debug, Clone)]
enum Arg {
    Text(String),
    Int(i64),
}

/// The `WHERE` of a search with only the filters given, so that each shape gets a plan of
/// its own (a catch-all `$1 IS NULL OR …` would hide the trigram index from a generic plan),
/// numbered from `$1`.
fn search_where(s: &KeySearch) -> (String, Vec<Arg>) {
    let mut clauses = Vec::new();
    let mut args = Vec::new();
    let next = |arg: Arg, args: &mut Vec<Arg>| {
        args.push(arg);
        format!("${}", args.len())
    };
    if let Some(product) = &s.product {
        // Matched against the product names (few), then each product's keys are read in
        // order from the (prd, remaining DESC, keyname) index.
        let p = next(Arg::Text(like_pattern(product)), &mut args);
        clauses
            .push(format!("prd IN (SELECT prd FROM pidms_products WHERE {})", product_match(&p)));
    }
    if let Some(min) = s.min_remaining {
        clauses.push(format!("remaining >= {}", next(Arg::Int(min), &mut args)));
    }
    if let Some(max) = s.max_remaining {
        clauses.push(format!("remaining <= {}", next(Arg::Int(max), &mut args)));
    }
    match s.blocked {
        Some(true) => clauses.push("blocked = 1".to_owned()),
        Some(false) => clauses.push("(blocked IS NULL OR blocked <> 1)".to_owned()),
        None => {}
    }
    let sql =
        if clauses.is_empty() { String::new() } else { format!("WHERE {}", clauses.join(" AND ")) };
    (sql, args)
}

/// A product name matching a `like_pattern` bound at `placeholder`.
fn product_match(placeholder: &str) -> String {
    format!("prd <> '' AND LOWER(prd) LIKE {placeholder} ESCAPE '\\'")
}

/// The total of a search. Without a remaining range it is a sum over the product counters
/// (exact, and as cheap with a million keys as with ten); with one, a count through the
/// remaining index.
fn search_count_sql(s: &KeySearch) -> (String, Vec<Arg>) {
    if s.min_remaining.is_some() || s.max_remaining.is_some() {
        let (filter, args) = search_where(s);
        return (format!("SELECT COUNT(*) FROM pidms_keys {filter}"), args);
    }
    let column = match s.blocked {
        None => "key_count",
        Some(true) => "blocked_keys",
        Some(false) => "key_count - blocked_keys",
    };
    let (filter, args) = match &s.product {
        Some(p) => (format!("WHERE {}", product_match("$1")), vec![Arg::Text(like_pattern(p))]),
        None => (String::new(), Vec::new()),
    };
    (
        format!("SELECT CAST(COALESCE(SUM({column}), 0) AS BIGINT) FROM pidms_products {filter}"),
        args,
    )
}

/// Binds search arguments in order onto a query of either backend.
macro_rules! bind_args {
    ($query:expr, $args:expr) => {{
        let mut q = $query;
        for arg in $args {
            q = match arg {
                Arg::Text(t) => q.bind(t.clone()),
                Arg::Int(i) => q.bind(*i),
            };
        }
        q
    }};
}

/// A page of a search in the API's order: product, then most remaining first.
///
/// With a product filter on PostgreSQL, each matching product's keys are read through a
/// `LATERAL` subquery that walks the `(prd, remaining DESC, keyname)` index and stops after
/// the page: PostgreSQL does not carry the inner index order through a join over `IN
/// (subquery)`, and otherwise fetched and sorted every key of the matching products
/// (13k rows, ~20 ms at 100k keys). SQLite reads `IN` lists in index order by itself.
///
/// Keys without a product sort last on both backends: PostgreSQL sorts NULLs last; SQLite
/// sorts them first, so without a product filter (the only case they can match) it orders
/// by `prd IS NULL` first, which its `pidms_keys_order` indexes lead with.
fn search_page_sql(s: &KeySearch, offset: i64, limit: i64, postgres: bool) -> (String, Vec<Arg>) {
    if let (true, Some(product)) = (postgres, &s.product) {
        let rest = KeySearch { product: None, ..s.clone() };
        let (filter, mut args) = search_where(&rest);
        let and = filter.strip_prefix("WHERE ").map(|f| format!("AND {f}")).unwrap_or_default();
        args.push(Arg::Text(like_pattern(product)));
        let pattern = args.len();
        args.push(Arg::Int(offset + limit));
        let each = args.len();
        args.push(Arg::Int(limit));
        args.push(Arg::Int(offset));
        let n = args.len();
        let sql = format!(
            "SELECT k.* FROM pidms_products p
             CROSS JOIN LATERAL (
                 SELECT {KEY_COLUMNS} FROM pidms_keys
                 WHERE prd = p.prd {and}
                 ORDER BY remaining DESC, keyname LIMIT ${each}
             ) k
             WHERE p.prd <> '' AND LOWER(p.prd) LIKE ${pattern} ESCAPE '\\'
             ORDER BY k.prd, k.remaining DESC, k.keyname LIMIT ${} OFFSET ${n}",
            n - 1
        );
        return (sql, args);
    }
    let (filter, mut args) = search_where(s);
    args.push(Arg::Int(limit));
    args.push(Arg::Int(offset));
    let n = args.len();
    let nulls_last = if postgres || s.product.is_some() { "" } else { "prd IS NULL, " };
    let sql = format!(
        "SELECT {KEY_COLUMNS} FROM pidms_keys {filter}
         ORDER BY {nulls_last}prd, remaining DESC, keyname LIMIT ${} OFFSET ${n}",
        n - 1
    );
    (sql, args)
}

impl Store {
    #[crate::boxed]
    pub async fn pidms_key(&self, keyname: &str) -> Result<Option<PidmsKey>, StoreError> {
        let sql = format!("SELECT {KEY_COLUMNS} FROM pidms_keys WHERE keyname = $1");
        let row = on_pool!(self, pool => sqlx::query_as::<_, PidmsKey>(sqlx::AssertSqlSafe(sql))
            .bind(keyname).fetch_optional(pool).await)?;
        Ok(row)
    }

    #[crate::boxed]
    pub async fn pidms_keys_by_name(&self, names: &[String]) -> Result<Vec<PidmsKey>, StoreError> {
        let mut out = Vec::with_capacity(names.len());
        for chunk in names.chunks(500) {
            macro_rules! fetch {
                ($db:ty, $pool:expr) => {{
                    let mut qb = sqlx::QueryBuilder::<$db>::new(format!(
                        "SELECT {KEY_COLUMNS} FROM pidms_keys WHERE keyname IN ("
                    ));
                    let mut list = qb.separated(", ");
                    for n in chunk {
                        list.push_bind(n);
                    }
                    qb.push(") ORDER BY keyname");
                    qb.build_query_as::<PidmsKey>().fetch_all($pool).await
                }};
            }
            let rows = match self {
                Store::Sqlite(pool, _) => fetch!(sqlx::Sqlite, pool)?,
                Store::Postgres(pool, _) => fetch!(sqlx::Postgres, pool)?,
            };
            out.extend(rows);
        }
        Ok(out)
    }

    /// A page of the search, ordered by product then remaining (most first), and the total.
    #[crate::boxed]
    pub async fn search_pidms_keys(
        &self,
        s: &KeySearch,
        offset: i64,
        limit: i64,
    ) -> Result<(i64, Vec<PidmsKey>), StoreError> {
        let (sql, args) = search_page_sql(s, offset, limit, matches!(self, Store::Postgres(..)));
        let rows = on_pool!(self, pool => bind_args!(
            sqlx::query_as::<_, PidmsKey>(sqlx::AssertSqlSafe(sql)), &args).fetch_all(pool).await)?;
        let (count_sql, args) = search_count_sql(s);
        let (total,): (i64,) = on_pool!(self, pool => bind_args!(
            sqlx::query_as(sqlx::AssertSqlSafe(count_sql)), &args).fetch_one(pool).await)?;
        Ok((total, rows))
    }

    /// The keys of a search after `after` (a keyname) in keyname order, without a count:
    /// the CSV export walks the whole inventory this way in O(n).
    #[crate::boxed]
    pub async fn pidms_keys_after(
        &self,
        s: &KeySearch,
        after: Option<&str>,
        limit: i64,
    ) -> Result<Vec<PidmsKey>, StoreError> {
        let (filter, mut args) = search_where(s);
        let mut clauses =
            if filter.is_empty() { "WHERE".to_owned() } else { format!("{filter} AND") };
        args.push(Arg::Text(after.unwrap_or("").to_owned()));
        clauses.push_str(&format!(" keyname > ${}", args.len()));
        args.push(Arg::Int(limit));
        let sql = format!(
            "SELECT {KEY_COLUMNS} FROM pidms_keys {clauses} ORDER BY keyname LIMIT ${}",
            args.len()
        );
        let rows = on_pool!(self, pool => bind_args!(
            sqlx::query_as::<_, PidmsKey>(sqlx::AssertSqlSafe(sql)), &args).fetch_all(pool).await)?;
        Ok(rows)
    }

    /// The plans of a search's page and count queries, as the database explains them
    /// (`EXPLAIN ANALYZE` on PostgreSQL, `EXPLAIN QUERY PLAN` on SQLite): for the README and
    /// the benchmark.
    #[crate::boxed]
    pub async fn explain_pidms_search(&self, s: &KeySearch) -> Result<Vec<String>, StoreError> {
        let (page, page_args) = search_page_sql(s, 0, 50, matches!(self, Store::Postgres(..)));
        let (count, count_args) = search_count_sql(s);
        let mut lines = Vec::new();
        for (sql, args) in [(page, page_args), (count, count_args)] {
            match self {
                Store::Sqlite(pool, _) => {
                    let q = sqlx::query_as::<_, (i64, i64, i64, String)>(sqlx::AssertSqlSafe(
                        format!("EXPLAIN QUERY PLAN {sql}"),
                    ));
                    for (_, _, _, detail) in bind_args!(q, &args).fetch_all(pool).await? {
                        lines.push(detail);
                    }
                }
                Store::Postgres(pool, _) => {
                    let q = sqlx::query_as::<_, (String,)>(sqlx::AssertSqlSafe(format!(
                        "EXPLAIN (ANALYZE, COSTS OFF) {sql}"
                    )));
                    lines.extend(
                        bind_args!(q, &args).fetch_all(pool).await?.into_iter().map(|(l,)| l),
                    );
                }
            }
            lines.push(String::new());
        }
        Ok(lines)
    }

    /// Keys whose product matches `filter` (all keys when `None`), for a sync.
    #[crate::boxed]
    pub async fn pidms_keynames(&self, filter: Option<&str>) -> Result<Vec<String>, StoreError> {
        let (filter, args) =
            search_where(&KeySearch { product: filter.map(str::to_owned), ..KeySearch::default() });
        let sql = format!("SELECT keyname FROM pidms_keys {filter} ORDER BY keyname");
        let rows: Vec<(String,)> = on_pool!(self, pool => bind_args!(
            sqlx::query_as(sqlx::AssertSqlSafe(sql)), &args).fetch_all(pool).await)?;
        Ok(rows.into_iter().map(|(k,)| k).collect())
    }

    /// Per product: key count, total and average remaining (retail keys' -1 not counted),
    /// from the counters.
    #[crate::boxed]
    pub async fn pidms_products(&self) -> Result<Vec<ProductSummary>, StoreError> {
        let rows = on_pool!(self, pool => sqlx::query_as::<_, ProductSummary>(
            "SELECT prd, key_count, total_remaining,
                    CAST(CASE WHEN counted_keys > 0
                         THEN CAST(total_remaining AS DOUBLE PRECISION) / counted_keys
                         ELSE 0 END AS DOUBLE PRECISION) AS avg_remaining
             FROM pidms_products WHERE prd <> '' AND key_count > 0 ORDER BY prd")
            .fetch_all(pool).await)?;
        Ok(rows)
    }

    /// Total remaining of one product.
    /// Sets a product's low-stock flag from its total against `threshold`, in one
    /// conditional update: `Some((low, total))` only for the caller that changed the flag, so
    /// a crossing is announced once; `None` when it already matched.
    #[crate::boxed]
    pub async fn update_pidms_product_low(
        &self,
        prd: &str,
        threshold: i64,
        now: DateTime<Utc>,
    ) -> Result<Option<(bool, i64)>, StoreError> {
        Ok(on_pool!(self, pool => sqlx::query_as::<_, (bool, i64)>(
            "UPDATE pidms_products SET low = (total_remaining < $2), updated_at = $3
             WHERE prd = $1 AND low <> (total_remaining < $2)
             RETURNING low, total_remaining")
            .bind(prd).bind(threshold).bind(now)
            .fetch_optional(pool).await)?)
    }

    #[crate::boxed]
    pub async fn count_low_pidms_products(&self) -> Result<i64, StoreError> {
        let (n,): (i64,) = on_pool!(self, pool => sqlx::query_as(
            "SELECT COUNT(*) FROM pidms_products WHERE low").fetch_one(pool).await)?;
        Ok(n)
    }
}

#[cfg(test)]
mod tests {
    use super::like_pattern;

    #[test]
    fn like_patterns_escape_wildcards() {
        assert_eq!(like_pattern("Office16"), "%office16%");
        assert_eq!(like_pattern("50%_off\\"), "%50\\%\\_off\\\\%");
    }
}
