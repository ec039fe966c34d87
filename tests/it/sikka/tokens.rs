//! Sikka request keys: refreshed once for many jobs, falling back and asking again, refreshed ahead by the schedule.

use super::*;

/// The key expires while writebacks are under way: twenty submissions across two worker
/// processes all get `API1025`, exactly one refresh reaches Sikka, and each call is retried
/// once within its job.
async fn an_expired_key_is_refreshed_once_for_twenty_jobs(mut env: TestEnv) {
    let (sim, _practices) = sim_for(&mut env).await;
    env.set("SWITCHYARD_WORKER_CONCURRENCY", "32");
    let app = env.start_app().await;
    let other =
        env.spawn("worker-b", &["worker", "--queues", "sikka", "--metrics-listen", "127.0.0.1:0"]);
    pull(&app.http, &app.base).await;
    let (_, w) =
        create(&app.http, &app.base, "D1001", "book_appointment", None, &appointment()).await;
    assert_eq!(ended(&app.http, &app.base, w["id"].as_str().unwrap()).await["status"], "completed");
    assert_eq!((sim.grants("request_key"), sim.grants("refresh_key")), (1, 0));

    sim.expire_keys();
    let tasks: Vec<_> = (0..20)
        .map(|_| {
            let (http, base) = (app.http.clone(), app.base.clone());
            tokio::spawn(async move {
                let (status, w) =
                    create(&http, &base, "D1001", "book_appointment", None, &appointment()).await;
                assert_eq!(status, 202, "{w}");
                w["id"].as_str().unwrap().to_owned()
            })
        })
        .collect();
    let mut ids = Vec::new();
    for t in tasks {
        ids.push(t.await.unwrap());
    }
    for id in &ids {
        let w = ended(&app.http, &app.base, id).await;
        assert_eq!(w["status"], "completed", "{w}");
        assert_eq!(w["submit_attempts"], 1, "retried within the job: {w}");
    }
    assert_eq!(sim.grants("refresh_key"), 1, "one refresh for all twenty");
    assert_eq!(sim.grants("request_key"), 1, "the refresh key worked: no new key");
    let expired =
        sim.requests().iter().filter(|r| r.path == "/appointment" && r.status == 400).count();
    assert!(expired >= 1, "some submissions met API1025");
    assert_eq!(
        sim.requests().iter().filter(|r| r.path == "/appointment" && r.status == 201).count(),
        21
    );
    drop(other);
    app.stop().await;
}
both_backends!(an_expired_key_is_refreshed_once_for_twenty_jobs);

async fn a_spent_refresh_key_falls_back_and_withdrawn_consent_asks_again(env: TestEnv) {
    let (_env, sim, practices, app) = with_sikka(env).await;
    let rx = Receiver::start().await;
    subscribe(&app, &rx, &["sikka.reauthorization_required"]).await;
    let (_, w) =
        create(&app.http, &app.base, "D1001", "create_patient", None, &operations()[1].2).await;
    assert_eq!(ended(&app.http, &app.base, w["id"].as_str().unwrap()).await["status"], "completed");

    // The refresh key was spent elsewhere: refused, then a new key from the secret.
    sim.spend_refresh_keys();
    sim.expire_keys();
    let (_, w) =
        create(&app.http, &app.base, "D1001", "create_patient", None, &operations()[1].2).await;
    assert_eq!(ended(&app.http, &app.base, w["id"].as_str().unwrap()).await["status"], "completed");
    assert_eq!((sim.grants("refresh_key"), sim.grants("request_key")), (1, 2));
    let refused = sim
        .requests()
        .iter()
        .filter(|r| r.grant_type.as_deref() == Some("refresh_key") && r.status == 400)
        .count();
    assert_eq!(refused, 1);

    // The practice withdraws its consent: the refresh and the new key are both refused.
    sim.set_revoked(&practices[0].office_id, true);
    sim.expire_keys();
    let (_, w) =
        create(&app.http, &app.base, "D1001", "create_patient", None, &operations()[1].2).await;
    let failed = ended(&app.http, &app.base, w["id"].as_str().unwrap()).await;
    assert_eq!(failed["status"], "failed");
    assert!(failed["error"].as_str().unwrap().contains("authorize"), "{failed}");
    let (_, list) = app.get_json("/api/v1/sikka/practices").await;
    let p = list.as_array().unwrap().iter().find(|p| p["office_id"] == "D1001").unwrap().clone();
    assert_eq!(p["token_status"], "reauthorization_required", "{p}");
    let event = wait_for("the re-authorization event", Duration::from_secs(20), || async {
        events(&rx).into_iter().next()
    })
    .await;
    assert_eq!(event["type"], "sikka.reauthorization_required");
    assert_eq!(event["data"]["office_id"], "D1001");
    // New writebacks are refused until the practice is back; the event came once.
    let (status, _) =
        create(&app.http, &app.base, "D1001", "create_patient", None, &operations()[1].2).await;
    assert_eq!(status, 409);
    assert_eq!(events(&rx).len(), 1);

    // Consent given again: the next pull clears the mark and writebacks flow.
    sim.set_revoked(&practices[0].office_id, false);
    pull(&app.http, &app.base).await;
    wait_for("the mark to clear", Duration::from_secs(20), || async {
        let (_, list) = app.get_json("/api/v1/sikka/practices").await;
        list.as_array()?
            .iter()
            .any(|p| p["office_id"] == "D1001" && p["token_status"] == "none")
            .then_some(())
    })
    .await;
    let (status, w) =
        create(&app.http, &app.base, "D1001", "create_patient", None, &operations()[1].2).await;
    assert_eq!(status, 202, "{w}");
    assert_eq!(ended(&app.http, &app.base, w["id"].as_str().unwrap()).await["status"], "completed");
    app.stop().await;
}
both_backends!(a_spent_refresh_key_falls_back_and_withdrawn_consent_asks_again);

/// `sikka-token-refresh` refreshes a key that expires within the look-ahead, and exports the
/// least time left.
async fn the_schedule_refreshes_keys_before_they_expire(mut env: TestEnv) {
    env.set("SWITCHYARD_SCHEDULE_SIKKA_TOKEN_REFRESH", "* * * * * *");
    env.set("SWITCHYARD_SIKKA_REFRESH_AHEAD_SECS", "600");
    let (sim, _practices) = sim_for(&mut env).await;
    sim.set_key_lifetime(Duration::from_secs(3600));
    let app = env.start_app().await;
    pull(&app.http, &app.base).await;
    let (_, w) =
        create(&app.http, &app.base, "D1001", "book_appointment", None, &appointment()).await;
    assert_eq!(ended(&app.http, &app.base, w["id"].as_str().unwrap()).await["status"], "completed");
    // An hour left, more than the look-ahead: left alone. (The gauge is process-wide and the
    // other backend's run of this test sets it too: only its presence is checked.)
    let gauge = wait_for("the expiry gauge", Duration::from_secs(20), || async {
        let m = app.anonymous.get(app.url("/metrics")).send().await.unwrap().text().await.unwrap();
        m.lines()
            .find(|l| l.starts_with("switchyard_sikka_token_expiry_seconds "))
            .and_then(|l| l.split_whitespace().nth(1)?.parse::<f64>().ok())
    })
    .await;
    assert!(gauge > 0.0, "{gauge}");
    let (_, list) = app.get_json("/api/v1/sikka/practices").await;
    let p = list.as_array().unwrap().iter().find(|p| p["office_id"] == "D1001").unwrap().clone();
    let expires: chrono::DateTime<chrono::Utc> =
        p["token_expires_at"].as_str().unwrap().parse().unwrap();
    let left = (expires - chrono::Utc::now()).num_seconds();
    assert!((3000..=3600).contains(&left), "{p}");
    assert_eq!(sim.grants("refresh_key"), 0);
    // Keys issued from now on last five minutes, within the look-ahead: refreshed ahead.
    sim.set_key_lifetime(Duration::from_secs(300));
    sim.expire_keys();
    let (_, w) =
        create(&app.http, &app.base, "D1001", "book_appointment", None, &appointment()).await;
    assert_eq!(ended(&app.http, &app.base, w["id"].as_str().unwrap()).await["status"], "completed");
    let before = sim.grants("refresh_key");
    wait_for("a scheduled refresh", Duration::from_secs(20), || async {
        (sim.grants("refresh_key") > before).then_some(())
    })
    .await;
    // The simulator counts the grant before the worker has stored the new key.
    let p = wait_for("the refresh to be stored", Duration::from_secs(10), || async {
        let (_, list) = app.get_json("/api/v1/sikka/practices").await;
        let p =
            list.as_array().unwrap().iter().find(|p| p["office_id"] == "D1001").unwrap().clone();
        (p["token_refresh_count"].as_i64().unwrap() >= 3).then_some(p)
    })
    .await;
    assert_eq!(p["token_status"], "active");
    app.stop().await;
}
both_backends!(the_schedule_refreshes_keys_before_they_expire);
