CREATE TABLE cbam_viz_schema (
	id SERIAL NOT NULL, 
	version INTEGER NOT NULL, 
	PRIMARY KEY (id)
);
CREATE TABLE free_votes (
	session_id VARCHAR(64) NOT NULL, 
	pair VARCHAR(200) NOT NULL, 
	id SERIAL NOT NULL, 
	shown_as_a VARCHAR(16) NOT NULL, 
	answer VARCHAR(100) NOT NULL, 
	response_ms INTEGER, 
	created_at TIMESTAMP WITH TIME ZONE DEFAULT now() NOT NULL, 
	method VARCHAR(100) NOT NULL, 
	target_class VARCHAR(200), 
	baseline_pred VARCHAR(200), 
	baseline_prob FLOAT, 
	cbam_pred VARCHAR(200), 
	cbam_prob FLOAT, 
	app_version VARCHAR(50) NOT NULL, 
	baseline_checksum VARCHAR(128), 
	cbam_checksum VARCHAR(128), 
	image_sha256 VARCHAR(64), 
	PRIMARY KEY (id), 
	UNIQUE (pair, method, image_sha256, session_id)
);
CREATE TABLE studies (
	id SERIAL NOT NULL, 
	name VARCHAR(200) NOT NULL, 
	pair VARCHAR(200) NOT NULL, 
	method VARCHAR(100) NOT NULL, 
	config_json TEXT NOT NULL, 
	stimuli_json TEXT NOT NULL, 
	secret VARCHAR(64) NOT NULL, 
	created_at TIMESTAMP WITH TIME ZONE DEFAULT now() NOT NULL, 
	PRIMARY KEY (id), 
	UNIQUE (name)
);
CREATE TABLE participants (
	id SERIAL NOT NULL, 
	study_id INTEGER NOT NULL, 
	participant_id VARCHAR(64) NOT NULL, 
	expertise VARCHAR(200), 
	created_at TIMESTAMP WITH TIME ZONE DEFAULT now() NOT NULL, 
	PRIMARY KEY (id), 
	UNIQUE (study_id, participant_id), 
	FOREIGN KEY(study_id) REFERENCES studies (id)
);
CREATE TABLE assignments (
	id SERIAL NOT NULL, 
	participant_pk INTEGER NOT NULL, 
	position INTEGER NOT NULL, 
	stimulus_id VARCHAR(300) NOT NULL, 
	target_class VARCHAR(200), 
	model_a VARCHAR(16) NOT NULL, 
	is_repeat BOOLEAN NOT NULL, 
	PRIMARY KEY (id), 
	UNIQUE (participant_pk, position), 
	CONSTRAINT assignment_model_a CHECK (model_a IN ('baseline', 'cbam')), 
	FOREIGN KEY(participant_pk) REFERENCES participants (id)
);
CREATE TABLE votes (
	study_id INTEGER NOT NULL, 
	participant_pk INTEGER NOT NULL, 
	position INTEGER NOT NULL, 
	stimulus_id VARCHAR(300) NOT NULL, 
	is_repeat BOOLEAN NOT NULL, 
	id SERIAL NOT NULL, 
	shown_as_a VARCHAR(16) NOT NULL, 
	answer VARCHAR(100) NOT NULL, 
	response_ms INTEGER, 
	created_at TIMESTAMP WITH TIME ZONE DEFAULT now() NOT NULL, 
	method VARCHAR(100) NOT NULL, 
	target_class VARCHAR(200), 
	baseline_pred VARCHAR(200), 
	baseline_prob FLOAT, 
	cbam_pred VARCHAR(200), 
	cbam_prob FLOAT, 
	app_version VARCHAR(50) NOT NULL, 
	baseline_checksum VARCHAR(128), 
	cbam_checksum VARCHAR(128), 
	image_sha256 VARCHAR(64), 
	PRIMARY KEY (id), 
	UNIQUE (study_id, participant_pk, position), 
	FOREIGN KEY(study_id) REFERENCES studies (id), 
	FOREIGN KEY(participant_pk) REFERENCES participants (id)
);
INSERT INTO cbam_viz_schema (id, version) VALUES (1, 1);
INSERT INTO free_votes (session_id, pair, id, shown_as_a, answer, response_ms, created_at, method, target_class, baseline_pred, baseline_prob, cbam_pred, cbam_prob, app_version, baseline_checksum, cbam_checksum, image_sha256) VALUES ('voter1', 'demo', 1, 'baseline', 'B', NULL, '2026-11-29 08:36:35', 'gradcam', NULL, 'x', 0.9, 'y', 0.8, '0.1.0', NULL, NULL, 'abababababababababababababababababababababababababababababababab');
INSERT INTO free_votes (session_id, pair, id, shown_as_a, answer, response_ms, created_at, method, target_class, baseline_pred, baseline_prob, cbam_pred, cbam_prob, app_version, baseline_checksum, cbam_checksum, image_sha256) VALUES ('voter2', 'demo', 2, 'cbam', 'A', NULL, '2026-11-29 08:36:35', 'gradcam', NULL, NULL, NULL, NULL, NULL, '0.1.0', NULL, NULL, 'cdcdcdcdcdcdcdcdcdcdcdcdcdcdcdcdcdcdcdcdcdcdcdcdcdcdcdcdcdcdcdcd');
INSERT INTO studies (id, name, pair, method, config_json, stimuli_json, secret, created_at) VALUES (1, 'plain', 'demo', 'gradcam', '{"answers": ["A", "B", "same", "neither"], "collect_expertise": true, "display": "overlay", "expertise_options": ["layperson", "some ML experience", "ML/vision expert"], "method": "gradcam", "models": ["baseline", "cbam"], "name": "plain", "pair": "demo", "question": "Which map better covers the {target}?", "repeat_trial": true, "stimuli": {"count": 8, "kind": "demo", "seed": 5}, "threshold": 0.6, "trials_per_participant": 4}', '[["demo:5:0", null], ["demo:5:1", null], ["demo:5:2", null], ["demo:5:3", null], ["demo:5:4", null], ["demo:5:5", null], ["demo:5:6", null], ["demo:5:7", null]]', '530ef42d9bf406596cf15946dde5ceff', '2026-11-29 08:36:35');
INSERT INTO studies (id, name, pair, method, config_json, stimuli_json, secret, created_at) VALUES (2, 'se-cbam', 'imagenet', 'gradcam', '{"answers": ["A", "B", "same", "neither"], "collect_expertise": false, "display": "overlay", "expertise_options": ["layperson", "some ML experience", "ML/vision expert"], "method": "gradcam", "models": ["se", "cbam"], "name": "se-cbam", "pair": "imagenet", "question": "Which map better covers the {target}?", "repeat_trial": false, "stimuli": {"count": 6, "kind": "demo", "seed": 6}, "threshold": 0.6, "trials_per_participant": 3}', '[["demo:6:0", null], ["demo:6:1", null], ["demo:6:2", null], ["demo:6:3", null], ["demo:6:4", null], ["demo:6:5", null]]', '1143d4d7c2f21b684e9c7fafd1f4dcfb', '2026-11-29 08:36:35');
INSERT INTO participants (id, study_id, participant_id, expertise, created_at) VALUES (1, 1, 'plain-p0', 'layperson', '2026-11-29 08:36:35');
INSERT INTO participants (id, study_id, participant_id, expertise, created_at) VALUES (2, 1, 'plain-p1', 'layperson', '2026-11-29 08:36:35');
INSERT INTO participants (id, study_id, participant_id, expertise, created_at) VALUES (3, 2, 'se-cbam-p0', NULL, '2026-11-29 08:36:35');
INSERT INTO participants (id, study_id, participant_id, expertise, created_at) VALUES (4, 2, 'se-cbam-p1', NULL, '2026-11-29 08:36:35');
INSERT INTO assignments (id, participant_pk, position, stimulus_id, target_class, model_a, is_repeat) VALUES (1, 1, 0, 'demo:5:2', NULL, 'baseline', false);
INSERT INTO assignments (id, participant_pk, position, stimulus_id, target_class, model_a, is_repeat) VALUES (2, 1, 1, 'demo:5:5', NULL, 'baseline', false);
INSERT INTO assignments (id, participant_pk, position, stimulus_id, target_class, model_a, is_repeat) VALUES (3, 1, 2, 'demo:5:7', NULL, 'cbam', false);
INSERT INTO assignments (id, participant_pk, position, stimulus_id, target_class, model_a, is_repeat) VALUES (4, 1, 3, 'demo:5:6', NULL, 'cbam', false);
INSERT INTO assignments (id, participant_pk, position, stimulus_id, target_class, model_a, is_repeat) VALUES (5, 1, 4, 'demo:5:2', NULL, 'cbam', true);
INSERT INTO assignments (id, participant_pk, position, stimulus_id, target_class, model_a, is_repeat) VALUES (6, 2, 0, 'demo:5:7', NULL, 'cbam', false);
INSERT INTO assignments (id, participant_pk, position, stimulus_id, target_class, model_a, is_repeat) VALUES (7, 2, 1, 'demo:5:6', NULL, 'baseline', false);
INSERT INTO assignments (id, participant_pk, position, stimulus_id, target_class, model_a, is_repeat) VALUES (8, 2, 2, 'demo:5:0', NULL, 'cbam', false);
INSERT INTO assignments (id, participant_pk, position, stimulus_id, target_class, model_a, is_repeat) VALUES (9, 2, 3, 'demo:5:7', NULL, 'baseline', true);
INSERT INTO assignments (id, participant_pk, position, stimulus_id, target_class, model_a, is_repeat) VALUES (10, 2, 4, 'demo:5:3', NULL, 'baseline', false);
INSERT INTO assignments (id, participant_pk, position, stimulus_id, target_class, model_a, is_repeat) VALUES (11, 3, 0, 'demo:6:5', NULL, 'baseline', false);
INSERT INTO assignments (id, participant_pk, position, stimulus_id, target_class, model_a, is_repeat) VALUES (12, 3, 1, 'demo:6:4', NULL, 'cbam', false);
INSERT INTO assignments (id, participant_pk, position, stimulus_id, target_class, model_a, is_repeat) VALUES (13, 3, 2, 'demo:6:2', NULL, 'baseline', false);
INSERT INTO assignments (id, participant_pk, position, stimulus_id, target_class, model_a, is_repeat) VALUES (14, 4, 0, 'demo:6:3', NULL, 'cbam', false);
INSERT INTO assignments (id, participant_pk, position, stimulus_id, target_class, model_a, is_repeat) VALUES (15, 4, 1, 'demo:6:1', NULL, 'baseline', false);
INSERT INTO assignments (id, participant_pk, position, stimulus_id, target_class, model_a, is_repeat) VALUES (16, 4, 2, 'demo:6:2', NULL, 'cbam', false);
INSERT INTO votes (study_id, participant_pk, position, stimulus_id, is_repeat, id, shown_as_a, answer, response_ms, created_at, method, target_class, baseline_pred, baseline_prob, cbam_pred, cbam_prob, app_version, baseline_checksum, cbam_checksum, image_sha256) VALUES (1, 1, 0, 'demo:5:2', false, 1, 'baseline', 'A', 0, '2026-11-29 08:36:35', 'gradcam', 'class0', 'b0', 0.5, 'c0', 0.25, '0.1.0', 'bbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbb', 'cccccccccccccccccccccccccccccccccccccccccccccccccccccccccccccccc', NULL);
INSERT INTO votes (study_id, participant_pk, position, stimulus_id, is_repeat, id, shown_as_a, answer, response_ms, created_at, method, target_class, baseline_pred, baseline_prob, cbam_pred, cbam_prob, app_version, baseline_checksum, cbam_checksum, image_sha256) VALUES (1, 1, 1, 'demo:5:5', false, 2, 'baseline', 'B', 100, '2026-11-29 08:36:35', 'gradcam', 'class1', 'b1', 0.51, 'c1', 0.26, '0.1.0', 'bbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbb', 'cccccccccccccccccccccccccccccccccccccccccccccccccccccccccccccccc', NULL);
INSERT INTO votes (study_id, participant_pk, position, stimulus_id, is_repeat, id, shown_as_a, answer, response_ms, created_at, method, target_class, baseline_pred, baseline_prob, cbam_pred, cbam_prob, app_version, baseline_checksum, cbam_checksum, image_sha256) VALUES (1, 1, 2, 'demo:5:7', false, 3, 'cbam', 'same', 200, '2026-11-29 08:36:35', 'gradcam', 'class2', 'b2', 0.52, 'c2', 0.27, '0.1.0', 'bbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbb', 'cccccccccccccccccccccccccccccccccccccccccccccccccccccccccccccccc', NULL);
INSERT INTO votes (study_id, participant_pk, position, stimulus_id, is_repeat, id, shown_as_a, answer, response_ms, created_at, method, target_class, baseline_pred, baseline_prob, cbam_pred, cbam_prob, app_version, baseline_checksum, cbam_checksum, image_sha256) VALUES (1, 1, 3, 'demo:5:6', false, 4, 'cbam', 'A', 300, '2026-11-29 08:36:35', 'gradcam', 'class3', 'b3', 0.53, 'c3', 0.28, '0.1.0', 'bbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbb', 'cccccccccccccccccccccccccccccccccccccccccccccccccccccccccccccccc', NULL);
INSERT INTO votes (study_id, participant_pk, position, stimulus_id, is_repeat, id, shown_as_a, answer, response_ms, created_at, method, target_class, baseline_pred, baseline_prob, cbam_pred, cbam_prob, app_version, baseline_checksum, cbam_checksum, image_sha256) VALUES (1, 1, 4, 'demo:5:2', true, 5, 'cbam', 'B', 400, '2026-11-29 08:36:35', 'gradcam', 'class4', 'b4', 0.54, 'c4', 0.29, '0.1.0', 'bbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbb', 'cccccccccccccccccccccccccccccccccccccccccccccccccccccccccccccccc', NULL);
INSERT INTO votes (study_id, participant_pk, position, stimulus_id, is_repeat, id, shown_as_a, answer, response_ms, created_at, method, target_class, baseline_pred, baseline_prob, cbam_pred, cbam_prob, app_version, baseline_checksum, cbam_checksum, image_sha256) VALUES (1, 2, 0, 'demo:5:7', false, 6, 'cbam', 'B', 1, '2026-11-29 08:36:35', 'gradcam', 'class0', 'b0', 0.5, 'c0', 0.25, '0.1.0', 'bbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbb', 'cccccccccccccccccccccccccccccccccccccccccccccccccccccccccccccccc', NULL);
INSERT INTO votes (study_id, participant_pk, position, stimulus_id, is_repeat, id, shown_as_a, answer, response_ms, created_at, method, target_class, baseline_pred, baseline_prob, cbam_pred, cbam_prob, app_version, baseline_checksum, cbam_checksum, image_sha256) VALUES (1, 2, 1, 'demo:5:6', false, 7, 'baseline', 'same', 101, '2026-11-29 08:36:35', 'gradcam', 'class1', 'b1', 0.51, 'c1', 0.26, '0.1.0', 'bbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbb', 'cccccccccccccccccccccccccccccccccccccccccccccccccccccccccccccccc', NULL);
INSERT INTO votes (study_id, participant_pk, position, stimulus_id, is_repeat, id, shown_as_a, answer, response_ms, created_at, method, target_class, baseline_pred, baseline_prob, cbam_pred, cbam_prob, app_version, baseline_checksum, cbam_checksum, image_sha256) VALUES (1, 2, 2, 'demo:5:0', false, 8, 'cbam', 'A', 201, '2026-11-29 08:36:35', 'gradcam', 'class2', 'b2', 0.52, 'c2', 0.27, '0.1.0', 'bbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbb', 'cccccccccccccccccccccccccccccccccccccccccccccccccccccccccccccccc', NULL);
INSERT INTO votes (study_id, participant_pk, position, stimulus_id, is_repeat, id, shown_as_a, answer, response_ms, created_at, method, target_class, baseline_pred, baseline_prob, cbam_pred, cbam_prob, app_version, baseline_checksum, cbam_checksum, image_sha256) VALUES (1, 2, 3, 'demo:5:7', true, 9, 'baseline', 'B', 301, '2026-11-29 08:36:35', 'gradcam', 'class3', 'b3', 0.53, 'c3', 0.28, '0.1.0', 'bbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbb', 'cccccccccccccccccccccccccccccccccccccccccccccccccccccccccccccccc', NULL);
INSERT INTO votes (study_id, participant_pk, position, stimulus_id, is_repeat, id, shown_as_a, answer, response_ms, created_at, method, target_class, baseline_pred, baseline_prob, cbam_pred, cbam_prob, app_version, baseline_checksum, cbam_checksum, image_sha256) VALUES (1, 2, 4, 'demo:5:3', false, 10, 'baseline', 'A', 401, '2026-11-29 08:36:35', 'gradcam', 'class4', 'b4', 0.54, 'c4', 0.29, '0.1.0', 'bbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbb', 'cccccccccccccccccccccccccccccccccccccccccccccccccccccccccccccccc', NULL);
INSERT INTO votes (study_id, participant_pk, position, stimulus_id, is_repeat, id, shown_as_a, answer, response_ms, created_at, method, target_class, baseline_pred, baseline_prob, cbam_pred, cbam_prob, app_version, baseline_checksum, cbam_checksum, image_sha256) VALUES (2, 3, 0, 'demo:6:5', false, 11, 'baseline', 'A', 0, '2026-11-29 08:36:35', 'gradcam', 'class0', 'b0', 0.5, 'c0', 0.25, '0.1.0', 'bbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbb', 'cccccccccccccccccccccccccccccccccccccccccccccccccccccccccccccccc', NULL);
INSERT INTO votes (study_id, participant_pk, position, stimulus_id, is_repeat, id, shown_as_a, answer, response_ms, created_at, method, target_class, baseline_pred, baseline_prob, cbam_pred, cbam_prob, app_version, baseline_checksum, cbam_checksum, image_sha256) VALUES (2, 3, 1, 'demo:6:4', false, 12, 'cbam', 'B', 100, '2026-11-29 08:36:35', 'gradcam', 'class1', 'b1', 0.51, 'c1', 0.26, '0.1.0', 'bbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbb', 'cccccccccccccccccccccccccccccccccccccccccccccccccccccccccccccccc', NULL);
INSERT INTO votes (study_id, participant_pk, position, stimulus_id, is_repeat, id, shown_as_a, answer, response_ms, created_at, method, target_class, baseline_pred, baseline_prob, cbam_pred, cbam_prob, app_version, baseline_checksum, cbam_checksum, image_sha256) VALUES (2, 3, 2, 'demo:6:2', false, 13, 'baseline', 'same', 200, '2026-11-29 08:36:35', 'gradcam', 'class2', 'b2', 0.52, 'c2', 0.27, '0.1.0', 'bbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbb', 'cccccccccccccccccccccccccccccccccccccccccccccccccccccccccccccccc', NULL);
INSERT INTO votes (study_id, participant_pk, position, stimulus_id, is_repeat, id, shown_as_a, answer, response_ms, created_at, method, target_class, baseline_pred, baseline_prob, cbam_pred, cbam_prob, app_version, baseline_checksum, cbam_checksum, image_sha256) VALUES (2, 4, 0, 'demo:6:3', false, 14, 'cbam', 'B', 1, '2026-11-29 08:36:35', 'gradcam', 'class0', 'b0', 0.5, 'c0', 0.25, '0.1.0', 'bbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbb', 'cccccccccccccccccccccccccccccccccccccccccccccccccccccccccccccccc', NULL);
INSERT INTO votes (study_id, participant_pk, position, stimulus_id, is_repeat, id, shown_as_a, answer, response_ms, created_at, method, target_class, baseline_pred, baseline_prob, cbam_pred, cbam_prob, app_version, baseline_checksum, cbam_checksum, image_sha256) VALUES (2, 4, 1, 'demo:6:1', false, 15, 'baseline', 'same', 101, '2026-11-29 08:36:35', 'gradcam', 'class1', 'b1', 0.51, 'c1', 0.26, '0.1.0', 'bbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbb', 'cccccccccccccccccccccccccccccccccccccccccccccccccccccccccccccccc', NULL);
INSERT INTO votes (study_id, participant_pk, position, stimulus_id, is_repeat, id, shown_as_a, answer, response_ms, created_at, method, target_class, baseline_pred, baseline_prob, cbam_pred, cbam_prob, app_version, baseline_checksum, cbam_checksum, image_sha256) VALUES (2, 4, 2, 'demo:6:2', false, 16, 'cbam', 'A', 201, '2026-11-29 08:36:35', 'gradcam', 'class2', 'b2', 0.52, 'c2', 0.27, '0.1.0', 'bbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbb', 'cccccccccccccccccccccccccccccccccccccccccccccccccccccccccccccccc', NULL);
SELECT setval(pg_get_serial_sequence('free_votes', 'id'), (SELECT max(id) FROM free_votes));
SELECT setval(pg_get_serial_sequence('studies', 'id'), (SELECT max(id) FROM studies));
SELECT setval(pg_get_serial_sequence('participants', 'id'), (SELECT max(id) FROM participants));
SELECT setval(pg_get_serial_sequence('assignments', 'id'), (SELECT max(id) FROM assignments));
SELECT setval(pg_get_serial_sequence('votes', 'id'), (SELECT max(id) FROM votes));
