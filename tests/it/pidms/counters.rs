//! PIDMS product counters stay exact under overlapping runs and racing batches.

use super::*;

/// The product counters behind `/pidms/products` and the search totals stay exact while a
/// check and a sync rewrite the same keys at once, moving stock and moving keys between
/// products (and out of any product).
async fn product_counters_stay_exact_under_overlapping_runs(mut env: TestEnv) {
    env.set("SWITCHYARD_PIDKEY_BATCH_SIZE", "5");
    env.set("SWITCHYARD_WORKER_CONCURRENCY", "8");
    let (_env, sim, app) = with_sim(env).await;
    let mut keys: Vec<String> = (400..520).map(key).collect();
    keys.extend((0..10).map(invalid_key));
    let (status, body) = check(&app, &keys.join("\n"), 30).await;
    assert_eq!(status, 200, "{body}");

    for (i, k) in keys.iter().enumerate().take(60) {
        match i % 3 {
            0 => sim.set_remaining(k, (i as i64 * 7) % 50),
            1 => sim.set_product(k, Some("Visio2021_Standard_MAK")),
            _ => sim.set_product(k, None),
        }
    }
    sim.set_latency(Duration::from_millis(20));
    let sync = app.http.post(app.url("/api/v1/pidms/sync")).json(&json!({})).send();
    let some = keys[..90].join("\n");
    let recheck = check(&app, &some, 0);
    let (sync, (status, rechecked)) = tokio::join!(sync, recheck);
    assert_eq!(status, 202);
    let sync: Value = sync.unwrap().json().await.unwrap();
    for id in [sync["sync_id"].as_str().unwrap(), rechecked["job_id"].as_str().unwrap()] {
        let run = run_done(&app, id).await;
        assert_eq!(run["batches_failed"], 0, "{run}");
    }

    let (_, all) = app.get_json("/api/v1/pidms/keys?page_size=500").await;
    let items = all["items"].as_array().unwrap();
    assert_eq!(items.len(), keys.len());
    assert_eq!(all["total"].as_u64(), Some(keys.len() as u64));
    let (_, products) = app.get_json("/api/v1/pidms/products").await;
    let products = products["products"].as_array().unwrap();
    let mut names: Vec<&str> = items.iter().filter_map(|k| k["prd"].as_str()).collect();
    names.sort_unstable();
    names.dedup();
    let listed: Vec<&str> = products.iter().map(|p| p["prd"].as_str().unwrap()).collect();
    assert_eq!(listed, names, "one row per product that has keys");
    assert!(names.contains(&"Visio2021_Standard_MAK"));
    for p in products {
        let mine: Vec<&Value> = items.iter().filter(|k| k["prd"] == p["prd"]).collect();
        let total: i64 = mine.iter().map(|k| k["remaining"].as_i64().unwrap().max(0)).sum();
        assert_eq!(p["key_count"].as_u64(), Some(mine.len() as u64), "{p}");
        assert_eq!(p["total_remaining"].as_i64(), Some(total), "{p}");
        // The search totals come from the same counters.
        let prd = p["prd"].as_str().unwrap();
        let (_, found) =
            app.get_json(&format!("/api/v1/pidms/keys?product={prd}&page_size=1")).await;
        assert_eq!(found["total"].as_u64(), Some(mine.len() as u64), "{prd}");
        let blocked = mine.iter().filter(|k| k["blocked"] == 1).count();
        let (_, found) = app
            .get_json(&format!("/api/v1/pidms/keys?product={prd}&blocked=false&page_size=1"))
            .await;
        assert_eq!(found["total"].as_u64(), Some((mine.len() - blocked) as u64), "{prd}");
    }
    let invalid = items.iter().filter(|k| k["prd"].is_null()).count();
    assert_eq!(invalid, 10 + 20, "the ten invalid keys and the twenty moved out of any product");
    let blocked = items.iter().filter(|k| k["blocked"] == 1).count();
    let (_, found) = app.get_json("/api/v1/pidms/keys?blocked=true&page_size=500").await;
    assert_eq!(found["total"].as_u64(), Some(blocked as u64));
    assert_eq!(found["items"].as_array().unwrap().len(), blocked);
    let in_range =
        items.iter().filter(|k| (10..=30).contains(&k["remaining"].as_i64().unwrap())).count();
    let (_, found) =
        app.get_json("/api/v1/pidms/keys?min_remaining=10&max_remaining=30&page_size=500").await;
    assert_eq!(found["total"].as_u64(), Some(in_range as u64));
    assert_eq!(found["items"].as_array().unwrap().len(), in_range);
    app.stop().await;
}
both_backends!(product_counters_stay_exact_under_overlapping_runs);

/// The race the per-key lock exists for, without HTTP in between: sixteen batches holding
/// the same keys (new at first, then moving between products) complete at once. The
/// counters must equal a recount of the keys afterwards.
async fn counters_are_exact_when_batches_race_on_the_same_keys(env: TestEnv) {
    use switchyard_shared::pidms::{NewPidmsBatch, NewPidmsRun, PidkeyAnswer, RunKind};
    let services = env.services().await;
    let store = services.store.clone();
    let keys: Vec<String> = (0..40).map(|i| format!("{:0>25}", format!("R{i}"))).collect();
    for round in 0..3 {
        let run_id = format!("race-{round}");
        let batches: Vec<NewPidmsBatch> = (0..16)
            .map(|b| NewPidmsBatch {
                id: format!("{run_id}-{b}").into(),
                seq: b,
                keys: keys.join("\n"),
            })
            .collect();
        let run = NewPidmsRun {
            id: &run_id,
            kind: RunKind::Check,
            product_filter: None,
            keys_total: keys.len() as i64,
            created_by: None,
            now: chrono::Utc::now(),
        };
        store.insert_pidms_run(&run, &batches, None).await.unwrap();
        let tasks: Vec<_> = store
            .pidms_batches(&run_id)
            .await
            .unwrap()
            .into_iter()
            .map(|batch| {
                let store = store.clone();
                let answers: Vec<PidkeyAnswer> = keys
                    .iter()
                    .enumerate()
                    .map(|(i, k)| {
                        let v = (i + batch.seq as usize + round) % 3;
                        let prd = [Some("RaceA"), Some("RaceB"), None][v];
                        serde_json::from_value(json!({
                            "keyname": k,
                            "prd": prd,
                            "remaining": (i * 3 + batch.seq as usize) % 20,
                            "blocked": if v == 1 { 1 } else { -1 },
                        }))
                        .unwrap()
                    })
                    .collect();
                tokio::spawn(async move {
                    store.complete_pidms_batch(&batch, &answers, chrono::Utc::now()).await.unwrap()
                })
            })
            .collect();
        for t in tasks {
            assert!(t.await.unwrap().is_some(), "each batch completes once");
        }
        let recount: Vec<(String, i64, i64, i64)> = store_query!(
            store,
            (String, i64, i64, i64),
            "SELECT COALESCE(prd, ''), COUNT(*),
                    CAST(SUM(CASE WHEN remaining > 0 THEN remaining ELSE 0 END) AS BIGINT),
                    CAST(SUM(CASE WHEN blocked = 1 THEN 1 ELSE 0 END) AS BIGINT)
             FROM pidms_keys GROUP BY COALESCE(prd, '') ORDER BY 1",
            fetch_all
        );
        let counters: Vec<(String, i64, i64, i64)> = store_query!(
            store,
            (String, i64, i64, i64),
            "SELECT prd, key_count, total_remaining, blocked_keys FROM pidms_products
             WHERE key_count <> 0 ORDER BY prd",
            fetch_all
        );
        assert_eq!(counters, recount, "round {round}");
        assert_eq!(recount.iter().map(|r| r.1).sum::<i64>(), keys.len() as i64);
    }
}
both_backends!(counters_are_exact_when_batches_race_on_the_same_keys);
