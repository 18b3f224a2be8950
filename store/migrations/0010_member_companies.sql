-- kind: expand
-- The companies a user belongs to, for `GET /v1/companies` (the console's first read): the
-- one read that crosses tenants on a user's behalf. Rather than a function with another
-- role's rights, two read-only policies admit, in a transaction that has set
-- `app.member_id` (and no company), that user's memberships and those companies' rows.
-- store/companies.py `member_companies` sets it to the verified caller's id, transaction-
-- local. Anywhere else it is unset (NULL) or, on a pooled session that set it before, ''
-- (what a transaction-local setting leaves behind): NULLIF makes both NULL, which admits
-- nothing. Old code never sets it.

CREATE POLICY member_directory ON memberships FOR SELECT TO system2_app
    USING (user_id = NULLIF(current_setting('app.member_id', true), ''));

CREATE POLICY member_directory ON companies FOR SELECT TO system2_app
    USING (id IN (SELECT m.company_id FROM memberships AS m
                  WHERE m.user_id = NULLIF(current_setting('app.member_id', true), '')));
