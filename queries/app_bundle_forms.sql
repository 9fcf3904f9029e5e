-- name: AppBundleFormInsertBatch :exec
INSERT INTO app_bundle_forms (version, name, schema_hash, ui_hash, core_hash, core_fields, fields)
SELECT @version::integer, unnest(@names::text[]), unnest(@schema_hashes::text[]), unnest(@ui_hashes::text[]),
       unnest(@core_hashes::text[]), unnest(@core_fields::json[]), unnest(@fields::json[]);

-- name: AppBundleFormList :many
SELECT name, schema_hash, ui_hash, core_hash, core_fields, fields
FROM app_bundle_forms
WHERE version = @version
ORDER BY name COLLATE "C";

-- name: AppBundleFormListWithCounts :many
-- AppBundleFormListWithCounts lists the forms of a version with the number of live
-- observations of each form type.
SELECT f.name, f.schema_hash, f.fields,
       (SELECT count(*) FROM observations o WHERE o.form_type = f.name AND NOT o.deleted) AS observation_count
FROM app_bundle_forms f
WHERE f.version = @version
ORDER BY f.name COLLATE "C";
