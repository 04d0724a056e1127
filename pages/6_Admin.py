"""Admin: who may sign in with which role, the password list's health, and the audit log of admin actions."""

import pandas as pd
import streamlit as st

import ui
from curation import accounts, store

st.set_page_config(page_title="Admin · Formcheck", page_icon="🔐", layout="wide")
project = ui.project(need="admin")
st.title("Users and roles")

if ui.sign_in_method() is None:
    st.info("Sign-in is not configured: this is the local single-user mode, where everything is allowed. The roles "
            "set here apply once a password list or OIDC is configured (README, section SECURITY).")
elif ui.sign_in_method() == "oidc":
    st.caption("Sign-in with OIDC: a user's name is the e-mail address their provider vouches for.")
path = accounts.password_file()
try:
    problems = accounts.read_list(path).problems if path is not None and path.exists() else []
except accounts.AccountError as exc:
    problems = [str(exc)]
for problem in problems:
    st.warning(f"Password list: {ui.md(problem)}")

users = accounts.list_users(project, path if path is not None and path.exists() else None)
st.dataframe(pd.DataFrame(users, columns=["name", "role", "on_password_list", "created_at", "updated_at"]),
             hide_index=True, width="stretch")
st.caption("viewer: reads every page · coach: labels · lead: settles disagreements, edits the rubric, adds videos, "
           "trains · admin: users, import, export. A name on the password list without a role is a coach.")

left, right = st.columns(2)
with left, st.form("admin_user_form", clear_on_submit=True):
    st.markdown("**Add a user or change a role**")
    name = st.text_input("Name (with OIDC: the e-mail address)", key="admin_name")
    KEEP = "(as now; coach if new)"
    choice = st.selectbox("Role", [KEEP, *accounts.ROLES], key="admin_role")
    password = st.text_input("Password (password list only; empty keeps the current one)", type="password",
                             key="admin_password", disabled=path is None)
    if st.form_submit_button("Save", type="primary"):
        ui.require("admin")
        current = {u["name"]: u["role"] for u in users}
        role = choice if choice != KEEP else current.get(" ".join(name.split()), accounts.LIST_DEFAULT_ROLE)
        try:
            saved = accounts.add_user(project, name, role, ui.actor(), password or None, path)
            new_password = " with a new password" if password else ""
            st.session_state["admin_toast"] = f"{ui.md(saved)} is {role}{new_password}."
            st.rerun()
        except (accounts.AccountError, store.StoreError, OSError) as exc:
            st.error(f"Nothing changed: {ui.md(exc)}")

with right, st.form("admin_remove_form"):
    st.markdown("**Remove a user** (their labels stay)")
    gone = st.selectbox("User", [u["name"] for u in users], key="admin_remove_name")
    sure = st.checkbox("Yes, remove this user", key="admin_remove_sure")
    if st.form_submit_button("Remove", disabled=not users):
        ui.require("admin")
        if not sure:
            st.error("Tick the box to confirm.")
        else:
            try:
                accounts.remove_user(project, gone, ui.actor(), path)
                st.session_state["admin_toast"] = f"{ui.md(gone)} removed."
                st.rerun()
            except (accounts.AccountError, store.StoreError, OSError) as exc:
                st.error(f"Nothing changed: {ui.md(exc)}")

st.subheader("Model-assisted labelling")
st.caption("Whether coaches see the current model's opinion of a clip on the Label page: off, on (with the clip), "
           "decide first (once their verdict is saved: research protocols that must avoid anchoring), or each coach "
           "chooses. Leads set it on the Label page too; every change is kept with who made it.")
ui.assist_project_setting(project, ui.actor(), key="admin_assist")

st.subheader("Audit log")
log = store.audit_log(project)
if log:
    st.dataframe(pd.DataFrame(log)[["at", "actor", "action", "target", "detail"]], hide_index=True, width="stretch")
else:
    st.caption("No admin action recorded yet.")

if st.session_state.get("admin_toast"):
    st.toast(st.session_state.pop("admin_toast"), icon="✅")
