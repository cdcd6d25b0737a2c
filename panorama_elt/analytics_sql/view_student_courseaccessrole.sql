-- One row per (org, course_id, user_id, lms): how many of that user's roles are each kind.
SELECT
  org,
  course_id,
  user_id,
  count_if(role = 'staff') AS is_course_staff,
  count_if(role = 'instructor') AS is_course_instructor,
  count_if(role = 'course_creator_group') AS is_course_creator_group,
  count_if(role = 'beta_testers') AS is_course_beta_testers,
  lms
FROM {student_courseaccessrole}
GROUP BY org, course_id, user_id, lms
