//! `/cluster/crs`: the balancing plan (Ferrox extension) — preview and carry out.

use super::*;
use ferrox_api::schema::STRING;
use ferrox_api::{Method, Param, Permission};
use ferrox_api_types::cluster::CrsPlan;
use ferrox_api_types::Upid;

const DIGEST: Param = Param::required(
    "digest",
    STRING,
    "The digest of the previewed plan: refused when the cluster now yields another plan.",
);

fn get_plan(ctx: &C<'_>) -> Result<CrsPlan, ApiError> {
    Ok(crate::balance::preview(ctx.state))
}

fn apply_plan(ctx: &C<'_>) -> Result<Upid, ApiError> {
    let plan = crate::balance::preview(ctx.state);
    let digest = ctx.params.need_str(&DIGEST)?;
    if digest != plan.digest {
        return Err(
            DIGEST.error("the cluster has changed since the plan was previewed: preview it again")
        );
    }
    if plan.steps.is_empty() {
        return Err(ApiError::new(
            400,
            format!("nothing to do: {}", plan.reason),
        ));
    }
    for m in plan.steps.iter().flat_map(|s| &s.moves) {
        ctx.require(&format!("/vms/{}", m.vmid), &["VM.Migrate"], false)?;
    }
    let user = ctx.caller()?.userid.clone();
    Ok(Upid(crate::balance::apply(ctx.state, plan, &user)?))
}

/// The endpoints of this file.
pub fn endpoints() -> Vec<Endpoint<Node>> {
    use Method::*;
    vec![
        Endpoint::new(
            Get,
            "/cluster/crs/plan",
            "The balancing plan the CRS would carry out now: steps of migrations, the imbalance before and after, each node's load, and why planning stopped (Ferrox extension).",
            Permission::Privs {
                path: "/",
                privs: &["Sys.Audit"],
                any: false,
            },
            get_plan,
        ),
        Endpoint::new(
            Post,
            "/cluster/crs/plan",
            "Carry out the previewed balancing plan as live migrations in one task, step by step, stopping at the first failure (Ferrox extension). Needs VM.Migrate on every guest it moves.",
            Permission::Privs {
                path: "/",
                privs: &["Sys.Modify"],
                any: false,
            },
            apply_plan,
        )
        .params(vec![DIGEST]),
    ]
}
