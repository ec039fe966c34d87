//! PIDMS search, products and low stock, and the simulator's key separators.

use super::*;

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
        let body = support::expect_status(
            http.get(format!("http://{addr}/ajax/pidms_api")).query(&[
                ("keys", joined.as_str()),
                ("justgetdescription", "0"),
                ("apikey", API_KEY),
            ]),
            200,
            "GET request",
        )
        .await;
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
