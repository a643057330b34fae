//! The Lua scripts of the Redis backend (`scripts/*.lua`, embedded at build time) and
//! how they are run: `EVALSHA` first, falling back to `EVAL` (which also caches the
//! script on that node) when the node answers `NOSCRIPT` — after a failover, a
//! restart or on a node that never saw the script. Scripts are not replicated, so this
//! fallback is the normal path once per script per node.

use fred::interfaces::ClientLike;
use fred::prelude::{Error, Value};
use fred::types::scripts::Script;
use fred::types::{ClusterHash, CustomCommand};

/// One embedded script.
#[derive(Debug)]
pub struct LuaScript {
    script: Script,
}

impl LuaScript {
    fn new(lua: &'static str) -> Self {
        Self {
            script: Script::from_lua(lua),
        }
    }

    /// Runs the script on the node owning `keys` (all of one slot). Sent as a plain
    /// command routed by the first key's slot, so per-command options (timeout,
    /// attempts) apply.
    pub async fn run<C: ClientLike>(&self, client: &C, keys: Vec<String>, args: Vec<Value>) -> Result<Value, Error> {
        let slot = keys.first().map(|k| fred::util::redis_keyslot(k.as_bytes()));
        let tail: Vec<Value> = std::iter::once(Value::from(keys.len().to_string()))
            .chain(keys.into_iter().map(Value::from))
            .chain(args)
            .collect();
        let with = |head: Value| -> Vec<Value> { std::iter::once(head).chain(tail.iter().cloned()).collect() };
        let command = |name: &'static str| CustomCommand::new_static(name, ClusterHash::from(slot), false);
        match client
            .custom::<Value, Value>(command("EVALSHA"), with(Value::from(self.script.sha1().clone())))
            .await
        {
            Err(e) if e.details().starts_with("NOSCRIPT") => {
                let lua = self.script.lua().cloned().unwrap_or_default();
                client.custom(command("EVAL"), with(Value::from(lua))).await
            }
            other => other,
        }
    }
}

/// Every script of the backend.
#[derive(Debug)]
pub struct Scripts {
    pub append: LuaScript,
    pub append_many: LuaScript,
    pub read: LuaScript,
    pub presence_join: LuaScript,
    pub presence_leave: LuaScript,
    pub presence_list: LuaScript,
    pub presence_refresh: LuaScript,
    pub presence_sweep: LuaScript,
    pub rate_limit: LuaScript,
}

impl Scripts {
    pub fn new() -> Self {
        Self {
            append: LuaScript::new(concat!(
                include_str!("scripts/prelude.lua"),
                include_str!("scripts/append.lua")
            )),
            append_many: LuaScript::new(concat!(
                include_str!("scripts/prelude.lua"),
                include_str!("scripts/append_many.lua")
            )),
            read: LuaScript::new(concat!(
                include_str!("scripts/prelude.lua"),
                include_str!("scripts/read.lua")
            )),
            presence_join: LuaScript::new(include_str!("scripts/presence_join.lua")),
            presence_leave: LuaScript::new(include_str!("scripts/presence_leave.lua")),
            presence_list: LuaScript::new(include_str!("scripts/presence_list.lua")),
            presence_refresh: LuaScript::new(include_str!("scripts/presence_refresh.lua")),
            presence_sweep: LuaScript::new(include_str!("scripts/presence_sweep.lua")),
            rate_limit: LuaScript::new(include_str!("scripts/rate_limit.lua")),
        }
    }
}

impl Default for Scripts {
    fn default() -> Self {
        Self::new()
    }
}
