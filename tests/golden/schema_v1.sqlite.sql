-- The SQLite schema of version 1, as created by feed-newsletter 0.1 (for migration tests).
CREATE TABLE schema_version (
	version INTEGER NOT NULL
);
CREATE TABLE source (
	id INTEGER NOT NULL, 
	kind VARCHAR(8) NOT NULL, 
	location TEXT NOT NULL, 
	name TEXT, 
	folder TEXT, 
	url TEXT, 
	tags JSON NOT NULL, 
	interval INTEGER, 
	origin VARCHAR(16) NOT NULL, 
	status VARCHAR(16) NOT NULL, 
	content_hash VARCHAR(64), 
	etag TEXT, 
	last_modified TEXT, 
	last_fetch_at DATETIME, 
	last_success_at DATETIME, 
	next_check_at DATETIME, 
	last_status INTEGER, 
	error_count INTEGER NOT NULL, 
	last_error TEXT, 
	warning TEXT, 
	created_at DATETIME NOT NULL, 
	lease_owner TEXT, 
	lease_until DATETIME, 
	CONSTRAINT pk_source PRIMARY KEY (id), 
	CONSTRAINT uq_source_location UNIQUE (location)
);
CREATE TABLE story (
	id INTEGER NOT NULL, 
	title TEXT NOT NULL, 
	title_derived BOOLEAN NOT NULL, 
	summary TEXT NOT NULL, 
	content TEXT NOT NULL, 
	link TEXT, 
	published DATETIME, 
	first_seen DATETIME NOT NULL, 
	updated DATETIME NOT NULL, 
	tags JSON NOT NULL, 
	content_hash VARCHAR(64) NOT NULL, 
	merged_into INTEGER, 
	CONSTRAINT pk_story PRIMARY KEY (id), 
	CONSTRAINT fk_story_merged_into_story FOREIGN KEY(merged_into) REFERENCES story (id)
);
CREATE INDEX ix_story_published ON story (published);
CREATE INDEX ix_story_first_seen ON story (first_seen);
CREATE TABLE digest (
	id INTEGER NOT NULL, 
	period VARCHAR(16) NOT NULL, 
	status VARCHAR(16) NOT NULL, 
	period_start DATETIME NOT NULL, 
	period_end DATETIME NOT NULL, 
	due_at DATETIME NOT NULL, 
	created_at DATETIME NOT NULL, 
	sent_at DATETIME, 
	subject TEXT NOT NULL, 
	html TEXT NOT NULL, 
	text TEXT NOT NULL, 
	note TEXT, 
	CONSTRAINT pk_digest PRIMARY KEY (id), 
	CONSTRAINT uq_digest_period UNIQUE (period)
);
CREATE TABLE subscriber (
	id INTEGER NOT NULL, 
	email TEXT NOT NULL, 
	status VARCHAR(16) NOT NULL, 
	created_at DATETIME NOT NULL, 
	confirmed_at DATETIME, 
	unsubscribed_at DATETIME, 
	bounces INTEGER NOT NULL, 
	last_request_at DATETIME, 
	CONSTRAINT pk_subscriber PRIMARY KEY (id), 
	CONSTRAINT uq_subscriber_email UNIQUE (email)
);
CREATE TABLE sighting (
	id INTEGER NOT NULL, 
	source_id INTEGER NOT NULL, 
	"key" TEXT NOT NULL, 
	kind VARCHAR(8) NOT NULL, 
	position INTEGER NOT NULL, 
	title TEXT NOT NULL, 
	title_derived BOOLEAN NOT NULL, 
	published DATETIME, 
	raw_date TEXT, 
	summary TEXT NOT NULL, 
	content TEXT NOT NULL, 
	link TEXT, 
	author TEXT, 
	tags JSON NOT NULL, 
	first_seen DATETIME NOT NULL, 
	last_seen DATETIME NOT NULL, 
	story_id INTEGER, 
	match_rule TEXT, 
	match_score FLOAT, 
	CONSTRAINT pk_sighting PRIMARY KEY (id), 
	CONSTRAINT uq_sighting_source_id_key UNIQUE (source_id, "key"), 
	CONSTRAINT fk_sighting_source_id_source FOREIGN KEY(source_id) REFERENCES source (id), 
	CONSTRAINT fk_sighting_story_id_story FOREIGN KEY(story_id) REFERENCES story (id)
);
CREATE INDEX ix_sighting_story_id ON sighting (story_id);
CREATE TABLE digest_story (
	digest_id INTEGER NOT NULL, 
	story_id INTEGER NOT NULL, 
	position INTEGER NOT NULL, 
	CONSTRAINT pk_digest_story PRIMARY KEY (digest_id, story_id), 
	CONSTRAINT fk_digest_story_digest_id_digest FOREIGN KEY(digest_id) REFERENCES digest (id), 
	CONSTRAINT fk_digest_story_story_id_story FOREIGN KEY(story_id) REFERENCES story (id)
);
CREATE TABLE delivery (
	id INTEGER NOT NULL, 
	digest_id INTEGER NOT NULL, 
	subscriber_id INTEGER NOT NULL, 
	status VARCHAR(16) NOT NULL, 
	attempts INTEGER NOT NULL, 
	reply TEXT, 
	message_id TEXT, 
	next_attempt_at DATETIME, 
	sent_at DATETIME, 
	lease_owner TEXT, 
	lease_until DATETIME, 
	CONSTRAINT pk_delivery PRIMARY KEY (id), 
	CONSTRAINT uq_delivery_digest_id_subscriber_id UNIQUE (digest_id, subscriber_id), 
	CONSTRAINT fk_delivery_digest_id_digest FOREIGN KEY(digest_id) REFERENCES digest (id), 
	CONSTRAINT fk_delivery_subscriber_id_subscriber FOREIGN KEY(subscriber_id) REFERENCES subscriber (id)
);
