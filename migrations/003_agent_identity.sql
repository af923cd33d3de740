-- An agent's uid is an agent and nothing else. CreateAgent now also receives the groups the
-- uid belongs to (from the system's group database, looked up by the daemon) and refuses a
-- uid that any rule already matches, by uid or through one of those groups. The principal
-- lookup refuses a peer whose agent uid also matches another rule, whatever happened since.
DROP FUNCTION pcs_create_agent(text, text, bigint, text);

CREATE FUNCTION pcs_create_agent(p_company text, p_agent text, p_uid bigint, p_actor text,
    p_gids bigint[])
RETURNS TABLE (id uuid, company text, name text, uid bigint, created_at timestamptz,
               created_by text, env_name text, ref_company text, ref_name text,
               ref_version integer)
LANGUAGE plpgsql AS $$
#variable_conflict use_column
DECLARE v_company uuid := pcs_company_id(p_company); v_agent uuid; v_rule record;
BEGIN
    IF EXISTS (SELECT 1 FROM agents a WHERE a.company_id = v_company AND a.name = p_agent) THEN
        PERFORM pcs_raise(6, format('agent %s/%s already exists', p_company, p_agent));
    END IF;
    SELECT p.id, p.role INTO v_rule FROM principals p
     WHERE p.match = 'uid' AND p.unix_id = p_uid LIMIT 1;
    IF FOUND THEN
        PERFORM pcs_raise(9, format('uid %s already has role %s (principal %s)', p_uid,
                                    v_rule.role, v_rule.id));
    END IF;
    SELECT p.id, p.role, p.unix_id INTO v_rule FROM principals p
     WHERE p.match = 'gid' AND p.unix_id = ANY (coalesce(p_gids, '{}')) ORDER BY p.id LIMIT 1;
    IF FOUND THEN
        PERFORM pcs_raise(9, format('uid %s belongs to group %s, which has role %s (principal %s); '
                                    'an agent''s uid may match no other rule', p_uid,
                                    v_rule.unix_id, v_rule.role, v_rule.id));
    END IF;
    INSERT INTO agents (company_id, name, uid, created_by)
        VALUES (v_company, p_agent, p_uid, p_actor) RETURNING agents.id INTO v_agent;
    INSERT INTO principals (match, unix_id, role, company_id, agent_id, created_by)
        VALUES ('uid', p_uid, 'agent', v_company, v_agent, p_actor);
    RETURN QUERY SELECT * FROM pcs_describe_agent(p_company, p_agent);
END $$;
