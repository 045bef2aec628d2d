-- Which departments a case is assigned to (lead and co), so that a department's list walks an index
-- instead of scanning every case. Kept in step with ../sqlite/0002_case_departments.sql.
CREATE TABLE case_departments (
    dept TEXT NOT NULL,
    case_id BIGINT NOT NULL REFERENCES cases (id),
    PRIMARY KEY (dept, case_id)
);

INSERT INTO case_departments (dept, case_id)
SELECT lead_dept, id FROM cases WHERE lead_dept IS NOT NULL
UNION
SELECT j.value, c.id FROM cases c, jsonb_array_elements_text(c.co_depts::jsonb) AS j(value);

DROP INDEX cases_lead_dept;
