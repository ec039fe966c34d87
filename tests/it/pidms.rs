//! PIDKey inventory on both backends, against the PIDKey simulator over HTTP on loopback:
//! checks and syncs field by field, separators, malformed lines, every failure mode with the
//! other batches unaffected, search, product summary, low-inventory edges, CSV export.

use crate::support;

use std::time::Duration;

use serde_json::{Value, json};
use support::{TestApp, TestEnv, receiver::Receiver, wait_for};
use switchyard_simulators::pidkey::{FIELDS, Failure, PRODUCTS, PidkeySim, answer_for};

const API_KEY: &str = "pk-test-0123456789";

/// A valid-looking key for index `i` whose simulated answer has a product (not null).
fn key(i: usize) -> String {
    (0..)
        .map(|salt| format!("{:0>25}", format!("K{i}X{salt}")).to_uppercase())
        .find(|k| !answer_for(k, None)["prd"].is_null())
        .unwrap()
}

async fn with_sim(mut env: TestEnv) -> (TestEnv, PidkeySim, TestApp) {
    let sim = PidkeySim::new(&[API_KEY]);
    let (addr, _task) =
        switchyard_simulators::serve("127.0.0.1:0".parse().unwrap(), sim.routes()).await.unwrap();
    env.set("SWITCHYARD_PIDKEY_BASE_URL", format!("http://{addr}"));
    env.set("PIDKEY_API_KEY", API_KEY);
    env.set("SWITCHYARD_PIDKEY_RATE_PER_SECOND", "200");
    env.set("SWITCHYARD_PIDKEY_RETRY_MAX_SECS", "8");
    env.set("SWITCHYARD_PIDKEY_TIMEOUT_SECS", "1");
    let app = env.start_app().await;
    (env, sim, app)
}

async fn check(app: &TestApp, keys: &str, wait: u64) -> (u16, Value) {
    let resp = app
        .http
        .post(app.url(&format!("/api/v1/pidms/check?wait={wait}")))
        .json(&json!({"keys": keys}))
        .send()
        .await
        .unwrap();
    (resp.status().as_u16(), resp.json().await.unwrap())
}

async fn run_done(app: &TestApp, id: &str) -> Value {
    wait_for(&format!("run {id} to complete"), Duration::from_secs(30), || async {
        let (_, run) = app.get_json(&format!("/api/v1/pidms/syncs/{id}")).await;
        (run["status"] == "completed").then_some(run)
    })
    .await
}

async fn a_check_stores_every_field(env: TestEnv) {
    let (_env, sim, app) = with_sim(env).await;
    let a = key(1);
    let b = key(2);
    let dashed = |k: &str| {
        k.as_bytes()
            .chunks(5)
            .map(|c| std::str::from_utf8(c).unwrap())
            .collect::<Vec<_>>()
            .join("-")
    };
    let input = format!(
        "{}\r\n  {}  \n\n{}\nnot-a-key\n{}\n",
        dashed(&a).to_lowercase(),
        b,
        a,
        "ABCDE-FGHIJ"
    );
    let (status, body) = check(&app, &input, 15).await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(
        (body["accepted"].as_u64(), body["rejected"].as_u64()),
        (Some(2), Some(2)),
        "{body}"
    );
    let lines: Vec<u64> =
        body["errors"].as_array().unwrap().iter().map(|e| e["line"].as_u64().unwrap()).collect();
    assert_eq!(lines, vec![5, 6]);
    let results = body["results"].as_array().unwrap();
    assert_eq!(results.len(), 2);
    for r in results {
        let want = answer_for(r["keyname"].as_str().unwrap(), None);
        for field in FIELDS {
            assert_eq!(r[field], want[field], "{field} of {}", r["keyname"]);
        }
        assert!(r["checked_at"].is_string() && r["created_at"].is_string());
    }
    // One request, keys CRLF-joined, deduped, dashless.
    let requests = sim.requests();
    assert_eq!(requests.len(), 1);
    assert_eq!(requests[0].separator, "crlf");
    assert_eq!(requests[0].keys, vec![a.clone(), b]);
    assert!(requests[0].api_key_ok);
    // The key is in the inventory, by either form.
    let (status, stored) = app.get_json(&format!("/api/v1/pidms/keys/{}", dashed(&a))).await;
    assert_eq!(status, 200);
    assert_eq!(stored["prd"], answer_for(&a, None)["prd"]);
    let (status, _) = app.get_json("/api/v1/pidms/keys/ZZZZZZZZZZZZZZZZZZZZZZZZZ").await;
    assert_eq!(status, 404);
    // Nothing valid: 422 naming the lines.
    let (status, body) = check(&app, "bad\nworse", 0).await;
    assert_eq!(status, 422);
    assert_eq!(body["errors"].as_array().unwrap().len(), 3);
    app.stop().await;
}
both_backends!(a_check_stores_every_field);

async fn a_sync_updates_every_key_and_announces(mut env: TestEnv) {
    env.set("SWITCHYARD_PIDKEY_BATCH_SIZE", "50");
    let (_env, sim, app) = with_sim(env).await;
    let keys: Vec<String> = (0..120).map(key).collect();
    let (status, body) = check(&app, &keys.join("\n"), 20).await;
    assert_eq!(status, 200, "{body}");
    let rx = Receiver::start().await;
    let resp = app
        .http
        .post(app.url("/api/v1/webhooks"))
        .json(&json!({"url": rx.url("/ops"), "event_types": ["pidms.sync.completed"]}))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 201);

    // Stock moves between syncs.
    sim.set_remaining(&keys[0], 7);
    let resp = app.http.post(app.url("/api/v1/pidms/sync")).json(&json!({})).send().await.unwrap();
    assert_eq!(resp.status(), 202);
    let accepted: Value = resp.json().await.unwrap();
    assert_eq!(
        (accepted["keys_total"].as_i64(), accepted["batches_total"].as_i64()),
        (Some(120), Some(3))
    );
    let run = run_done(&app, accepted["sync_id"].as_str().unwrap()).await;
    assert_eq!(
        (
            run["batches_done"].as_i64(),
            run["batches_failed"].as_i64(),
            run["keys_updated"].as_i64()
        ),
        (Some(3), Some(0), Some(120))
    );
    assert!(run["finished_at"].is_string());
    let (_, k0) = app.get_json(&format!("/api/v1/pidms/keys/{}", keys[0])).await;
    assert_eq!(k0["remaining"], 7);
    assert!(sim.requests().iter().all(|r| r.keys.len() <= 50));

    let note = wait_for("pidms.sync.completed", Duration::from_secs(10), || async {
        rx.received("/ops").into_iter().next()
    })
    .await;
    let event: Value = serde_json::from_slice(&note.body).unwrap();
    assert_eq!(event["type"], "pidms.sync.completed");
    assert_eq!(event["data"]["sync_id"], accepted["sync_id"]);
    assert_eq!(event["data"]["keys_updated"], 120);

    // A product filter narrows the sync.
    let product = answer_for(&keys[0], None)["prd"].as_str().unwrap().to_owned();
    let expected = keys.iter().filter(|k| answer_for(k, None)["prd"] == product.as_str()).count();
    let fragment = product[..8].to_lowercase();
    let resp = app
        .http
        .post(app.url("/api/v1/pidms/sync"))
        .json(&json!({"product_filter": fragment}))
        .send()
        .await
        .unwrap();
    let accepted: Value = resp.json().await.unwrap();
    let matching = keys
        .iter()
        .filter(|k| answer_for(k, None)["prd"].as_str().unwrap().to_lowercase().contains(&fragment))
        .count();
    assert!(matching >= expected);
    assert_eq!(accepted["keys_total"].as_u64(), Some(matching as u64));
    run_done(&app, accepted["sync_id"].as_str().unwrap()).await;
    app.stop().await;
}
both_backends!(a_sync_updates_every_key_and_announces);

async fn each_failure_mode_ends_right(mut env: TestEnv) {
    env.set("SWITCHYARD_PIDKEY_BATCH_SIZE", "2");
    env.set("SWITCHYARD_WORKER_CONCURRENCY", "1");
    let (_env, sim, app) = with_sim(env).await;
    let mut n = 100;
    for (failure, permanent) in [
        (Failure::ErrorObject, true),
        (Failure::Unauthorized, true),
        (Failure::RateLimited(Some(1)), false),
        (Failure::RateLimited(None), false),
        (Failure::ServerError(503), false),
        (Failure::Slow(Duration::from_secs(3)), false),
        (Failure::Truncated, false),
    ] {
        let keys: Vec<String> = (n..n + 6).map(key).collect();
        n += 6;
        sim.fail_next([failure.clone()]);
        let before = sim.requests().len();
        let (status, body) = check(&app, &keys.join("\n"), 0).await;
        assert_eq!(status, 202, "{body}");
        let run = run_done(&app, body["job_id"].as_str().unwrap()).await;
        let failed = run["batches_failed"].as_i64().unwrap();
        if permanent {
            assert_eq!((failed, run["batches_done"].as_i64()), (1, Some(2)), "{failure:?}: {run}");
            let error = run["errors"][0]["error"].as_str().unwrap();
            assert!(error.contains("refused"), "{failure:?}: {error}");
            assert!(!error.contains(API_KEY));
            assert_eq!(sim.requests().len() - before, 3, "{failure:?} is not retried");
        } else {
            assert_eq!((failed, run["batches_done"].as_i64()), (0, Some(3)), "{failure:?}: {run}");
            assert_eq!(sim.requests().len() - before, 4, "{failure:?} is retried once");
        }
    }
    // A single object instead of an array is taken as an answer for that key.
    let keys = [key(900)];
    sim.fail_next([Failure::SingleObject]);
    let (status, body) = check(&app, &keys.join("\n"), 15).await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["results"][0]["keyname"], keys[0].as_str());
    // Retry-After is honoured: the retry came after at least a second.
    let keys = [key(901), key(902)];
    sim.fail_next([Failure::RateLimited(Some(1))]);
    let before = sim.requests().len();
    let (status, _) = check(&app, &keys.join("\n"), 15).await;
    assert_eq!(status, 200);
    let requests = sim.requests();
    let gap = requests[before + 1].at - requests[before].at;
    assert!(gap >= Duration::from_millis(950), "{gap:?}");
    app.stop().await;
}
both_backends!(each_failure_mode_ends_right);

async fn search_products_and_low_stock(mut env: TestEnv) {
    env.set("SWITCHYARD_PIDMS_LOW_INVENTORY_THRESHOLD", "50");
    let (_env, sim, app) = with_sim(env).await;
    let keys: Vec<String> = (200..260).map(key).collect();
    let (status, _) = check(&app, &keys.join("\n"), 20).await;
    assert_eq!(status, 200);
    // Three invalid keys (no product): they sort after every product, on both backends.
    let invalid: Vec<String> = (0..3).map(invalid_key).collect();
    let (status, _) = check(&app, &invalid.join("\n"), 20).await;
    assert_eq!(status, 200);

    // Search: substring, case-insensitive; ordered by product then remaining desc.
    let (_, all) = app.get_json("/api/v1/pidms/keys?page_size=500").await;
    let items = all["items"].as_array().unwrap();
    assert_eq!(all["total"].as_i64(), Some(items.len() as i64));
    assert_eq!(items.len(), 63);
    let order: Vec<(bool, String, i64)> = items
        .iter()
        .map(|k| {
            (
                k["prd"].is_null(),
                k["prd"].as_str().unwrap_or("").to_owned(),
                k["remaining"].as_i64().unwrap_or(-1),
            )
        })
        .collect();
    let mut sorted = order.clone();
    sorted.sort_by(|a, b| a.0.cmp(&b.0).then(a.1.cmp(&b.1)).then(b.2.cmp(&a.2)));
    assert_eq!(order, sorted);
    assert!(order[60..].iter().all(|k| k.0), "keys without a product last");
    let product = items[0]["prd"].as_str().unwrap().to_owned();
    let (_, found) = app
        .get_json(&format!(
            "/api/v1/pidms/keys?product={}&min_remaining=10&max_remaining=300",
            product[..6].to_uppercase()
        ))
        .await;
    for k in found["items"].as_array().unwrap() {
        assert!(k["prd"].as_str().unwrap().to_lowercase().contains(&product[..6].to_lowercase()));
        let r = k["remaining"].as_i64().unwrap();
        assert!((10..=300).contains(&r));
    }
    let (_, blocked) = app.get_json("/api/v1/pidms/keys?blocked=true").await;
    assert!(blocked["items"].as_array().unwrap().iter().all(|k| k["blocked"] == 1));
    let (_, page2) = app.get_json("/api/v1/pidms/keys?page=2&page_size=10").await;
    assert_eq!(page2["items"][0]["keyname"], items[10]["keyname"]);
    let (status, _) = app.get_json("/api/v1/pidms/keys?min_remaining=5&max_remaining=1").await;
    assert_eq!(status, 422);

    // Product summary arithmetic, from the stored keys.
    let (_, products) = app.get_json("/api/v1/pidms/products").await;
    for p in products["products"].as_array().unwrap() {
        let mine: Vec<&Value> = items.iter().filter(|k| k["prd"] == p["prd"]).collect();
        let total: i64 = mine.iter().map(|k| k["remaining"].as_i64().unwrap().max(0)).sum();
        let counted: Vec<i64> =
            mine.iter().map(|k| k["remaining"].as_i64().unwrap()).filter(|r| *r >= 0).collect();
        assert_eq!(p["key_count"].as_u64(), Some(mine.len() as u64));
        assert_eq!(p["total_remaining"].as_i64(), Some(total));
        let avg = if counted.is_empty() {
            0.0
        } else {
            counted.iter().sum::<i64>() as f64 / counted.len() as f64
        };
        assert!((p["avg_remaining"].as_f64().unwrap() - avg).abs() < 1e-6);
        assert_eq!(p["low_inventory"], total < 50);
    }

    // CSV: the same rows, in keyname order (the export walks the inventory by key).
    let csv = app.http.get(app.url("/api/v1/pidms/keys/export.csv")).send().await.unwrap();
    assert_eq!(csv.status(), 200);
    assert!(csv.headers()["content-type"].to_str().unwrap().starts_with("text/csv"));
    let text = csv.text().await.unwrap();
    let lines: Vec<&str> = text.lines().collect();
    assert!(lines[0].starts_with("keyname,keyname_with_dash,prd"));
    let csv_keys: Vec<&str> = lines[1..].iter().map(|l| l.split(',').next().unwrap()).collect();
    let mut want: Vec<&str> = items.iter().map(|k| k["keyname"].as_str().unwrap()).collect();
    want.sort_unstable();
    assert_eq!(csv_keys, want);
    let first = items.iter().find(|k| k["keyname"] == want[0]).unwrap();
    let fields: Vec<&str> = lines[1].split(',').collect();
    assert_eq!(
        (fields[1], fields[2]),
        (first["keyname_with_dash"].as_str().unwrap(), first["prd"].as_str().unwrap_or(""))
    );
    assert_eq!(fields[6], first["remaining"].to_string());
    // Filters apply to the export as to the search.
    let (_, blocked) = app.get_json("/api/v1/pidms/keys?blocked=true&page_size=500").await;
    let text = app
        .http
        .get(app.url("/api/v1/pidms/keys/export.csv?blocked=true"))
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert_eq!(text.lines().count() as i64 - 1, blocked["total"].as_i64().unwrap());

    // Low stock is announced once per crossing.
    let rx = Receiver::start().await;
    app.http
        .post(app.url("/api/v1/webhooks"))
        .json(&json!({"url": rx.url("/low"), "event_types": ["pidms.low_inventory"]}))
        .send()
        .await
        .unwrap();
    let target: Vec<String> =
        keys.iter().filter(|k| answer_for(k, None)["prd"] == product.as_str()).cloned().collect();
    let sync = |filter: String| {
        let req =
            app.http.post(app.url("/api/v1/pidms/sync")).json(&json!({"product_filter": filter}));
        async move {
            req.send().await.unwrap().json::<Value>().await.unwrap()["sync_id"]
                .as_str()
                .unwrap()
                .to_owned()
        }
    };
    let low_events = || {
        rx.received("/low")
            .iter()
            .filter(|r| {
                serde_json::from_slice::<Value>(&r.body).unwrap()["data"]["product"]
                    == product.as_str()
            })
            .count()
    };
    for k in &target {
        sim.set_remaining(k, 100);
    }
    run_done(&app, &sync(product.clone()).await).await;
    let baseline = low_events();
    // (Above zero, so that only the emptied product below reports a total of 0.)
    for k in &target {
        sim.set_remaining(k, 2);
    }
    assert!(target.len() * 2 < 50, "{} keys", target.len());
    run_done(&app, &sync(product.clone()).await).await;
    wait_for("the low-inventory event", Duration::from_secs(10), || async {
        (low_events() == baseline + 1).then_some(())
    })
    .await;
    run_done(&app, &sync(product.clone()).await).await;
    for k in &target {
        sim.set_remaining(k, 100);
    }
    run_done(&app, &sync(product.clone()).await).await;
    for k in &target {
        sim.set_remaining(k, 1);
    }
    run_done(&app, &sync(product.clone()).await).await;
    wait_for("a second crossing", Duration::from_secs(10), || async {
        (low_events() == baseline + 2).then_some(())
    })
    .await;
    // Still low on the next sync: no event.
    run_done(&app, &sync(product.clone()).await).await;
    // Stock back, then every key of the product moves to another one (PIDKey now says so):
    // the product is no longer in any answer, yet it crossed, and that is announced too.
    for k in &target {
        sim.set_remaining(k, 100);
    }
    run_done(&app, &sync(product.clone()).await).await;
    let other = PRODUCTS.iter().find(|p| **p != product).unwrap();
    for k in &target {
        sim.set_product(k, Some(other));
    }
    run_done(&app, &sync(product.clone()).await).await;
    let emptied =
        wait_for("the crossing of an emptied product", Duration::from_secs(10), || async {
            rx.received("/low").iter().find_map(|r| {
                let e: Value = serde_json::from_slice(&r.body).unwrap();
                (e["data"]["product"] == product.as_str() && e["data"]["total_remaining"] == 0)
                    .then_some(e)
            })
        })
        .await;
    assert_eq!(emptied["data"]["threshold"], 50);
    assert_eq!(low_events(), baseline + 3, "one event per crossing, none while still low");
    app.stop().await;
}
both_backends!(search_products_and_low_stock);

/// What PIDKey accepts between keys: CRLF, LF, and the four characters `\r\n`; dashes and
/// case do not matter. The simulator must answer all of them alike.
#[tokio::test]
async fn the_simulator_takes_every_separator_form() {
    let sim = PidkeySim::new(&[API_KEY]);
    let (addr, _task) =
        switchyard_simulators::serve("127.0.0.1:0".parse().unwrap(), sim.routes()).await.unwrap();
    let (a, b) = (key(1), key(2));
    let dashed = |k: &str| {
        k.as_bytes()
            .chunks(5)
            .map(|c| std::str::from_utf8(c).unwrap())
            .collect::<Vec<_>>()
            .join("-")
    };
    let http = reqwest::Client::new();
    let mut answers = Vec::new();
    for (joined, form) in [
        (format!("{a}\r\n{b}"), "crlf"),
        (format!("{a}\n{b}"), "lf"),
        (format!("{a}\\r\\n{b}"), "literal"),
        (format!("{}\r\n{}", dashed(&a).to_lowercase(), dashed(&b)), "crlf"),
    ] {
        let resp = http
            .get(format!("http://{addr}/ajax/pidms_api"))
            .query(&[("keys", joined.as_str()), ("justgetdescription", "0"), ("apikey", API_KEY)])
            .send()
            .await
            .unwrap();
        assert_eq!(resp.status(), 200);
        let body: Value = resp.json().await.unwrap();
        assert_eq!(body.as_array().map(Vec::len), Some(2), "{form}: {body}");
        assert_eq!(sim.requests().last().unwrap().separator, form);
        answers.push(body);
    }
    assert!(answers.iter().all(|a| a == &answers[0]), "every form gets the same answers");
    assert_eq!(answers[0][0], answer_for(&a, None));
    // As strict as the real service: a wrong API key and a missing flag are refused.
    for query in [
        vec![("keys", a.as_str()), ("justgetdescription", "0"), ("apikey", "wrong")],
        vec![("keys", a.as_str()), ("apikey", API_KEY)],
    ] {
        let body: Value = http
            .get(format!("http://{addr}/ajax/pidms_api"))
            .query(&query)
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap();
        assert!(body["short_result"].is_string() && body["result"].is_string(), "{body}");
    }
}

/// Failing runs of every kind, with the API and worker as child processes logging at trace
/// level: the PIDKey API key is in no log line, no error body and no metric.
async fn the_api_key_never_leaks(mut env: TestEnv) {
    const SECRET: &str = "pk-live-SECRETVALUE-7f3a9c";
    let sim = PidkeySim::new(&[SECRET]);
    let (addr, _task) =
        switchyard_simulators::serve("127.0.0.1:0".parse().unwrap(), sim.routes()).await.unwrap();
    env.set("SWITCHYARD_PIDKEY_BASE_URL", format!("http://{addr}"));
    env.set("PIDKEY_API_KEY", SECRET);
    env.set("SWITCHYARD_PIDKEY_BATCH_SIZE", "1");
    env.set("SWITCHYARD_PIDKEY_TIMEOUT_SECS", "1");
    env.set("SWITCHYARD_PIDKEY_RETRY_MAX_SECS", "2");
    env.set("SWITCHYARD_LOG", support::TRACE_LOG);
    let (api, base) = env.spawn_api().await;
    let (worker, worker_base) = env.spawn_role("worker", &["--queues", "pidms"]).await;
    let http = support::http_with_key(env.admin_key());

    // One key per batch, one failure per batch; the last two fail on every attempt, so they
    // end with "unavailable" and "could not be read" after the retry budget.
    sim.fail_next([
        Failure::Unauthorized,
        Failure::ErrorObject,
        Failure::Slow(Duration::from_secs(3)),
        Failure::ServerError(502),
        Failure::RateLimited(None),
    ]);
    let keys: Vec<String> = (300..305).map(key).collect();
    let resp = http
        .post(format!("{base}/api/v1/pidms/check"))
        .json(&json!({"keys": keys.join("\n")}))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 202);
    let first: Value = resp.json().await.unwrap();
    let first_id = first["job_id"].as_str().unwrap().to_owned();
    let run_of = |id: String| {
        let (http, base) = (http.clone(), base.clone());
        async move {
            wait_for(&format!("run {id}"), Duration::from_secs(60), || async {
                let run: Value =
                    support::get_value(&http, &format!("{base}/api/v1/pidms/syncs/{id}")).await;
                (run["status"] == "completed").then_some(run)
            })
            .await
        }
    };
    let run = run_of(first_id).await;
    assert_eq!(run["batches_failed"], 2, "401 and the error object are refusals: {run}");
    let mut bodies = vec![run.to_string()];

    // Failing on every attempt: "unavailable" and "could not be read" once the budget is spent.
    for (i, (failure, error)) in
        [(Failure::ServerError(503), "unavailable"), (Failure::Truncated, "could not be read")]
            .into_iter()
            .enumerate()
    {
        sim.fail_always(Some(failure));
        let resp = http
            .post(format!("{base}/api/v1/pidms/check"))
            .json(&json!({"keys": key(310 + i)}))
            .send()
            .await
            .unwrap();
        let id = resp.json::<Value>().await.unwrap()["job_id"].as_str().unwrap().to_owned();
        let run = run_of(id).await;
        assert!(run["errors"][0]["error"].as_str().unwrap().contains(error), "{run}");
        bodies.push(run.to_string());
    }
    sim.fail_always(None);

    // Error bodies at the edge, too: bad input and an unknown key.
    for resp in [
        http.post(format!("{base}/api/v1/pidms/check"))
            .json(&json!({"keys": ""}))
            .send()
            .await
            .unwrap(),
        http.get(format!("{base}/api/v1/pidms/keys/{}", key(399))).send().await.unwrap(),
        http.get(format!("{base}/api/v1/pidms/keys/export.csv")).send().await.unwrap(),
    ] {
        bodies.push(resp.text().await.unwrap());
    }
    let worker_metrics =
        reqwest::get(format!("{worker_base}/metrics")).await.unwrap().text().await.unwrap();
    assert!(
        worker_metrics.contains("switchyard_upstream_requests_total{"),
        "the worker counts upstream requests"
    );
    bodies.push(worker_metrics);
    bodies.push(reqwest::get(format!("{base}/metrics")).await.unwrap().text().await.unwrap());
    let (api_log, worker_log) = (api.log.clone(), worker.log.clone());
    api.signal("TERM");
    worker.signal("TERM");
    assert_eq!(api.wait(Duration::from_secs(20)).await, Some(0));
    assert_eq!(worker.wait(Duration::from_secs(20)).await, Some(0));
    let worker_log = support::read_log(&worker_log);
    assert!(worker_log.contains("PIDKey batch failed"), "the failures were logged");
    assert!(sim.requests().iter().all(|r| r.api_key_ok), "the key did reach PIDKey");
    for (what, text) in [("api log", support::read_log(&api_log)), ("worker log", worker_log)]
        .into_iter()
        .chain(bodies.into_iter().map(|b| ("a body", b)))
    {
        assert!(
            !text.contains(SECRET) && !text.contains("SECRETVALUE"),
            "the API key is in {what}"
        );
    }
}
both_backends!(the_api_key_never_leaks);

/// A worker killed with SIGKILL in the middle of a sync: another worker picks up the
/// orphaned batches and the run still completes, every key counted once.
async fn a_killed_worker_s_sync_still_completes(mut env: TestEnv) {
    let sim = PidkeySim::new(&[API_KEY]);
    let (addr, _task) =
        switchyard_simulators::serve("127.0.0.1:0".parse().unwrap(), sim.routes()).await.unwrap();
    env.set("SWITCHYARD_PIDKEY_BASE_URL", format!("http://{addr}"));
    env.set("PIDKEY_API_KEY", API_KEY);
    env.set("SWITCHYARD_PIDKEY_BATCH_SIZE", "5");
    env.set("SWITCHYARD_WORKER_CONCURRENCY", "2");
    let app = env.start_api_only().await;
    let args = ["worker", "--queues", "pidms", "--metrics-listen", "127.0.0.1:0"];
    let worker_a = env.spawn("worker-a", &args);
    let keys: Vec<String> = (0..60).map(key).collect();
    let (status, body) = check(&app, &keys.join("\n"), 30).await;
    assert_eq!(status, 200, "{body}");

    sim.set_latency(Duration::from_millis(400));
    let before = sim.requests().len();
    let resp = app.http.post(app.url("/api/v1/pidms/sync")).json(&json!({})).send().await.unwrap();
    assert_eq!(resp.status(), 202);
    let sync_id = resp.json::<Value>().await.unwrap()["sync_id"].as_str().unwrap().to_owned();
    // Kill A once it has finished some batches and is in the middle of others.
    let progress = wait_for("worker A to be mid-sync", Duration::from_secs(30), || async {
        let (_, run) = app.get_json(&format!("/api/v1/pidms/syncs/{sync_id}")).await;
        let done = run["batches_done"].as_i64().unwrap();
        (done >= 2 && sim.requests().len() - before > done as usize).then_some(done)
    })
    .await;
    worker_a.kill().await;
    assert!(progress < 12);
    let worker_b = env.spawn("worker-b", &args);
    let run = run_done(&app, &sync_id).await;
    assert_eq!(
        (
            run["batches_total"].as_i64(),
            run["batches_done"].as_i64(),
            run["batches_failed"].as_i64(),
            run["keys_updated"].as_i64()
        ),
        (Some(12), Some(12), Some(0), Some(60)),
        "{run}"
    );
    let (_, page) = app.get_json("/api/v1/pidms/keys?page_size=100").await;
    assert_eq!(page["total"], 60);
    drop(worker_b);
    app.stop().await;
}
both_backends!(a_killed_worker_s_sync_still_completes);

/// A key whose simulated answer has no product (an invalid key), for index `i`.
fn invalid_key(i: usize) -> String {
    (0..)
        .map(|salt| format!("{:0>25}", format!("V{i}Y{salt}")).to_uppercase())
        .find(|k| answer_for(k, None)["prd"].is_null())
        .unwrap()
}

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
            .map(|b| NewPidmsBatch { id: format!("{run_id}-{b}"), seq: b, keys: keys.join("\n") })
            .collect();
        let run = NewPidmsRun {
            id: &run_id,
            kind: RunKind::Check,
            product_filter: None,
            keys_total: keys.len() as i64,
            created_by: None,
            now: chrono::Utc::now(),
        };
        store.insert_pidms_run(&run, &batches).await.unwrap();
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
