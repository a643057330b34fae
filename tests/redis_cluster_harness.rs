//! The Redis Cluster test harness itself (`e2e/redis-cluster.sh` and
//! `eventcast_tests::redis_cluster`), against the real 6-node cluster that
//! `scripts/test.sh` starts: its health, where a topic's keys live, and a master's
//! failover and return, which the Redis backend's failover tests rely on.

use std::time::{Duration, Instant};

use eventcast_tests::redis_cluster::{RedisCluster, parse_cluster_nodes, parse_info, unique_topic};

/// The key scheme of the Redis backend: one hash tag per topic (DESIGN.md).
fn log_key(topic: &str) -> String {
    format!("ec:{{{topic}}}:log")
}

#[tokio::test]
async fn cluster_has_three_healthy_masters_each_with_a_replica() {
    let Some(cluster) = RedisCluster::from_env() else {
        return;
    };
    let _guard = RedisCluster::shared().await;
    cluster.wait_healthy(Duration::from_secs(10)).await;
    assert_eq!(cluster.nodes().len(), 6, "nodes: {}", cluster.nodes_arg());

    let (mut masters, mut replicas) = (0, 0);
    for &node in cluster.nodes() {
        let info = cluster.info(node, "cluster").await.expect("CLUSTER INFO");
        assert_eq!(
            info.get("cluster_state").map(String::as_str),
            Some("ok"),
            "{node}: {info:?}"
        );
        assert_eq!(
            info.get("cluster_slots_ok").map(String::as_str),
            Some("16384"),
            "{node}"
        );
        assert_eq!(info.get("cluster_known_nodes").map(String::as_str), Some("6"), "{node}");
        let repl = cluster.info(node, "replication").await.expect("INFO replication");
        match repl.get("role").map(String::as_str) {
            Some("master") => {
                masters += 1;
                assert_eq!(
                    repl.get("connected_slaves").map(String::as_str),
                    Some("1"),
                    "{node}: {repl:?}"
                );
            }
            Some("slave") => {
                replicas += 1;
                assert_eq!(repl.get("master_link_status").map(String::as_str), Some("up"), "{node}");
            }
            other => panic!("{node}: role {other:?}"),
        }
    }
    assert_eq!((masters, replicas), (3, 3));
    assert_eq!(cluster.masters().await.len(), 3);
}

#[tokio::test]
async fn master_for_a_hash_tagged_key_is_where_its_writes_land() {
    let Some(cluster) = RedisCluster::from_env() else {
        return;
    };
    let _guard = RedisCluster::shared().await;
    let topic = unique_topic("t");
    assert!(topic.starts_with("t-") && topic.ends_with(".x"), "{topic}");
    let key = log_key(&topic);
    let slot = cluster.slot_for(&key).await;
    // The hash tag puts every key of the topic on one slot.
    assert_eq!(cluster.slot_for(&format!("ec:{{{topic}}}:meta")).await, slot);
    assert_eq!(cluster.slot_for(&format!("ec:{{{topic}}}")).await, slot);
    assert_eq!(cluster.slot_for(&topic).await, slot, "the slot is the tag's");

    let master = cluster.master_for(&key).await;
    // The script agrees (the braces of the key quoted as one argument).
    let out = std::process::Command::new("bash")
        .arg(cluster.script_path())
        .args(["master-for", &key])
        .output()
        .expect("run redis-cluster.sh");
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    assert_eq!(String::from_utf8_lossy(&out.stdout).trim(), master.to_string());

    // Written through another node with redirections followed, it lands on `master`.
    let other = *cluster
        .nodes()
        .iter()
        .find(|n| **n != master)
        .expect("more than one node");
    let value = unique_topic("v");
    assert_eq!(
        cluster.cluster_cli_at(other, &["set", &key, &value]).await,
        Ok("OK".to_owned())
    );
    assert_eq!(cluster.cli_at(master, &["get", &key]).await, Ok(value.clone()));
    let count = cluster
        .cli_at(master, &["cluster", "countkeysinslot", &slot.to_string()])
        .await;
    assert!(count.as_deref().is_ok_and(|c| c != "0"), "{count:?}");
    // Another master redirects instead of answering.
    let masters = cluster.masters().await;
    let elsewhere = masters.iter().find(|m| **m != master).expect("three masters");
    let moved = cluster.cli_at(*elsewhere, &["get", &key]).await;
    assert!(
        moved
            .as_ref()
            .is_err_and(|e| e.contains(&format!("MOVED {slot} {master}"))),
        "{moved:?}"
    );
    assert_eq!(cluster.cli(&["del", &key]).await, Ok("1".to_owned()));
}

#[tokio::test]
async fn killed_master_fails_over_to_its_replica_and_rejoins_as_a_replica() {
    let Some(cluster) = RedisCluster::from_env() else {
        return;
    };
    let _guard = RedisCluster::exclusive().await;
    cluster.wait_healthy(Duration::from_secs(30)).await;
    let key = log_key(&unique_topic("t"));
    let value = unique_topic("v");
    let master = cluster.master_for(&key).await;
    assert_eq!(
        cluster.cli_at(master, &["set", &key, &value]).await,
        Ok("OK".to_owned())
    );
    // The replica has it before the master dies.
    assert_eq!(cluster.cli_at(master, &["wait", "1", "2000"]).await, Ok("1".to_owned()));

    let killed = cluster.kill_master_for(&key).await;
    assert_eq!(killed, master.port());
    let killed_at = Instant::now();
    let failover = cluster.wait_for_failover(killed, Duration::from_secs(15)).await;
    println!("failover: the replica of {master} took over {failover:?} after SIGKILL");

    let promoted = cluster.master_for(&key).await;
    assert_ne!(promoted, master);
    assert_eq!(
        cluster.cli(&["get", &key]).await,
        Ok(value),
        "replicated value survives"
    );
    let next = unique_topic("v");
    assert_eq!(cluster.cli(&["set", &key, &next]).await, Ok("OK".to_owned()));
    assert_eq!(cluster.cli(&["get", &key]).await, Ok(next));
    let served_after = killed_at.elapsed();
    assert!(
        served_after < Duration::from_secs(15),
        "slot served again only {served_after:?} after the kill"
    );

    let restarted_at = Instant::now();
    cluster.restart_node(killed).await;
    cluster.wait_healthy(Duration::from_secs(30)).await;
    println!(
        "restart: node {killed} back as a replica with its link up after {:?}",
        restarted_at.elapsed()
    );
    let repl = cluster
        .info(cluster.node(killed), "replication")
        .await
        .expect("INFO replication of the restarted node");
    assert_eq!(repl.get("role").map(String::as_str), Some("slave"), "{repl:?}");
    assert_eq!(repl.get("master_link_status").map(String::as_str), Some("up"));
    assert_eq!(repl.get("master_port"), Some(&promoted.port().to_string()));
    assert_eq!(cluster.cli(&["del", &key]).await, Ok("1".to_owned()));
}

#[tokio::test]
async fn exclusive_guard_restarts_a_node_its_test_left_down() {
    let Some(cluster) = RedisCluster::from_env() else {
        return;
    };
    let key = log_key(&unique_topic("t"));
    let killed = {
        let _guard = RedisCluster::exclusive().await;
        cluster.wait_healthy(Duration::from_secs(30)).await;
        cluster.kill_master_for(&key).await
        // Dropped here without restarting the node: the guard does.
    };
    let _guard = RedisCluster::shared().await;
    assert!(cluster.is_healthy().await, "healthy again once the guard is dropped");
    let role = cluster
        .info(cluster.node(killed), "replication")
        .await
        .expect("node back");
    assert!(role.contains_key("role"), "{role:?}");
}

#[test]
fn cluster_nodes_output_is_parsed() {
    let text = "\
07c3 127.0.0.1:7102@17102 master,fail - 1700000000000 1700000000000 3 disconnected\n\
67ed 127.0.0.1:7100@17100 myself,master - 0 1700000000000 1 connected 0-5460 [5461->-e7d1]\n\
292f 127.0.0.1:7103@17103,node-3 slave 67ed 0 1700000000000 1 connected\n\
e7d1 127.0.0.1:7101@17101 master - 0 1700000000000 2 connected 5461-10922 12000\r\n";
    let nodes = parse_cluster_nodes(text).expect("parse");
    assert_eq!(nodes.len(), 4);
    assert!(nodes[0].is_master() && nodes[0].is_failing() && !nodes[0].connected);
    assert!(nodes[0].slots.is_empty());
    assert!(nodes[1].has_flag("myself") && nodes[1].serves(0) && nodes[1].serves(5460));
    assert!(!nodes[1].serves(5461), "migration markers are not served slots");
    assert_eq!(nodes[2].addr.port(), 7103);
    assert_eq!(nodes[2].master_id.as_deref(), Some("67ed"));
    assert!(nodes[3].serves(12000) && !nodes[3].serves(11999));
    assert!(parse_cluster_nodes("x y z").is_err());

    let info = parse_info("# Replication\r\nrole:slave\r\nmaster_link_status:up\r\n");
    assert_eq!(info.get("master_link_status").map(String::as_str), Some("up"));
}

#[test]
fn unique_topics_differ() {
    let a = unique_topic("t");
    let b = unique_topic("t");
    assert_ne!(a, b);
    eventcast_api::pattern::validate_name(&a).expect("a valid topic name");
}
