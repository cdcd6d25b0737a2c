-- One row per enrollment, with its user, country, course, grade, roles and manual enrollment
-- history; every join also matches lms, so installations sharing the lake never mix.
SELECT
  e.user_id,
  u.username,
  p.name AS user_fullname,
  u.email AS user_email,
  p.country AS user_country,
  c.latitude,
  c.longitude,
  e.lms,
  s.organization,
  s.course_code,
  s.course_edition,
  s.display_name AS course_name,
  e.course_id,
  o.start AS course_start_date,
  o."end" AS course_end_date,
  e.id AS enrollment_id,
  date_diff('day', CAST(e.created AS DATE), current_date) AS days_since_enrolled,
  e.is_active AS enrollment_is_active,
  e.mode AS enrollment_mode,
  e.created AS date_enrolled,
  CASE WHEN m.last_state_transition LIKE '% to unenrolled' THEN m.last_time_stamp END AS date_unenrolled,
  round(g.percent_grade * 100) AS percent_grade,
  g.letter_grade,
  g.modified AS date_graded,
  u.is_active AS user_is_active,
  u.is_staff AS user_is_global_staff,
  r.is_course_staff AS user_is_course_staff,
  r.is_course_instructor AS user_is_course_instructor,
  r.is_course_beta_testers AS user_is_course_beta_tester,
  r.is_course_creator_group AS user_is_course_creator_group,
  (
    coalesce(r.is_course_staff, 0) = 0
    AND coalesce(r.is_course_instructor, 0) = 0
    AND coalesce(r.is_course_creator_group, 0) = 0
    AND coalesce(u.is_staff, 0) = 0
  ) AS is_student,
  m.last_state_transition,
  m.last_time_stamp AS last_state_transition_time_stamp,
  m.count_of_transitions,
  m.transitions_time_stamps,
  m.state_transitions,
  m.reasons,
  m.enrolled_by_ids
FROM {student_courseenrollment} e
LEFT JOIN {auth_user} u ON u.id = e.user_id AND u.lms = e.lms
LEFT JOIN {auth_userprofile} p ON p.user_id = e.user_id AND p.lms = e.lms
LEFT JOIN {grades_persistentcoursegrade} g
  ON g.user_id = e.user_id AND g.course_id = e.course_id AND g.lms = e.lms
LEFT JOIN {course_overviews_courseoverview} o ON o.id = e.course_id AND o.lms = e.lms
LEFT JOIN {course_structures} s ON s.module_location = e.course_id AND s.lms = e.lms
LEFT JOIN {country_codes} c ON c.alpha2_code = p.country AND c.lms = e.lms
LEFT JOIN {view_student_courseaccessrole} r
  ON r.course_id = e.course_id AND r.user_id = e.user_id AND r.lms = e.lms
LEFT JOIN {view_student_manualenrollmentaudit} m ON m.enrollment_id = e.id AND m.lms = e.lms
