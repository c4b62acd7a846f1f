"""
The flags of system variables, for the C{sys_variable_flag} column of
C{SHOW PROXYSESSION VARIABLES}.

ODP prints the flags the observer gave each variable, as the concatenation of
C{" && invisible"}, C{" && global_scope"}, C{" && session_scope"},
C{" && readonly"} and C{" && nullable"}, in that order
(C{ob_show_session_handler.cpp}, C{get_var_scope_str}). Our backends cannot all
tell us (MariaDB has no such flags, seekdb keeps them in an internal table), so
they are tabled here, per kind of backend:

  - OceanBase (and seekdb): the flags of the MySQL-mode variables in
    OceanBase's variable definitions (C{ob_system_variable_init.json}; C{NULL}
    there means nullable, C{SESSION_READONLY} is not one of the printed flags);
  - MySQL/MariaDB: C{information_schema.SYSTEM_VARIABLES} of MariaDB 10.11
    (scope C{GLOBAL} = global only, C{SESSION} = global and session,
    C{SESSION ONLY} = session only; C{READ_ONLY}); MariaDB knows no nullable.

The two disagree on many names (OceanBase mimics MySQL variables with scopes
of its own), which is why there are two tables and not one. A name missing
from the backend's table is looked up in the other one; one unknown to both
is taken for an ordinary variable with both scopes, which is what most
variables C{SHOW SESSION VARIABLES} lists are.
"""

from __future__ import annotations

import enum
from typing import Dict

__all__ = ["VarFlag", "flags_of", "sys_variable_flag"]


class VarFlag(enum.IntFlag):
    """
    The flags ODP prints, in its order (the values are this module's own).
    """

    INVISIBLE = 1
    GLOBAL_SCOPE = 2
    SESSION_SCOPE = 4
    READONLY = 8
    NULLABLE = 16


#: How each flag is spelled in C{sys_variable_flag}, in ODP's order.
_SPELLING = (
    (VarFlag.INVISIBLE, " && invisible"),
    (VarFlag.GLOBAL_SCOPE, " && global_scope"),
    (VarFlag.SESSION_SCOPE, " && session_scope"),
    (VarFlag.READONLY, " && readonly"),
    (VarFlag.NULLABLE, " && nullable"),
)

#: What a variable neither table knows is taken for.
DEFAULT_FLAGS = VarFlag.GLOBAL_SCOPE | VarFlag.SESSION_SCOPE

# The tables: flags -> blank-separated lower-case names (generated from the
# sources named in the module docstring; keep each name in one group).
_OCEANBASE_GROUPS: Dict[VarFlag, str] = {
    VarFlag.INVISIBLE | VarFlag.GLOBAL_SCOPE: """
        _clear_last_archive_timestamp _create_audit_purge_job _drop_audit_purge_job
        _set_last_archive_timestamp _set_purge_job_interval _set_purge_job_status
    """,
    VarFlag.INVISIBLE | VarFlag.GLOBAL_SCOPE | VarFlag.SESSION_SCOPE: """
        _enable_old_charset_aggregation _enable_rich_vector_format _groupby_nopushdown_cut_ratio
        _nlj_batching_enabled _ob_px_bcast_optimization _ob_px_slave_mapping_threshold
        _push_join_predicate _px_dist_agg_partial_rollup_pushdown _px_partial_rollup_pushdown
        _px_shared_hash_join
    """,
    VarFlag.INVISIBLE | VarFlag.SESSION_SCOPE: """
        _enable_parallel_ddl _enable_parallel_dml _enable_parallel_query _force_parallel_ddl_dop
        _force_parallel_dml_dop _force_parallel_query_dop _ob_enable_role_ids
        _ob_ols_policy_session_labels _px_broadcast_fudge_factor _px_min_granules_per_slave
        _px_partition_scan_threshold debug_sync ob_global_debug_sync ob_safe_weak_read_snapshot
    """,
    VarFlag.INVISIBLE | VarFlag.SESSION_SCOPE | VarFlag.READONLY: """
        __ob_client_capability_flag _current_default_catalog _ob_proxy_session_temporary_table_used
        _ob_proxy_weakread_feedback ob_capability_flag ob_proxy_global_variables_version
        ob_proxy_partition_hit ob_proxy_set_trx_executed ob_proxy_user_privilege
        ob_statement_trace_id
    """,
    VarFlag.INVISIBLE | VarFlag.SESSION_SCOPE | VarFlag.NULLABLE: """
        ncharacter_set_connection
    """,
    VarFlag.GLOBAL_SCOPE: """
        _enable_mysql_pl_priv_check _priv_control activate_all_roles_on_login
        auto_increment_cache_size automatic_sp_privileges avoid_temporal_upgrade binlog_cache_size
        binlog_error_action binlog_group_commit_sync_delay binlog_group_commit_sync_no_delay_count
        binlog_max_flush_queue_time binlog_order_commits binlog_stmt_cache_size
        binlog_transaction_dependency_history_size binlog_transaction_dependency_tracking
        check_proxy_users connect_timeout connection_control_failed_connections_threshold
        connection_control_max_connection_delay connection_control_min_connection_delay
        default_password_lifetime delay_key_write delayed_insert_limit delayed_insert_timeout
        delayed_queue_size enforce_gtid_consistency event_scheduler expire_logs_days flush
        flush_time ft_stopword_file group_replication_allow_local_disjoint_gtids_join
        group_replication_allow_local_lower_version_join group_replication_auto_increment_increment
        group_replication_bootstrap_group group_replication_components_stop_timeout
        group_replication_compression_threshold group_replication_enforce_update_everywhere_checks
        group_replication_exit_state_action group_replication_flow_control_applier_threshold
        group_replication_flow_control_certifier_threshold group_replication_flow_control_mode
        group_replication_member_weight group_replication_poll_spin_loops
        group_replication_recovery_complete_at group_replication_recovery_reconnect_interval
        group_replication_recovery_retry_count group_replication_recovery_ssl_verify_server_cert
        group_replication_recovery_use_ssl group_replication_single_primary_mode
        group_replication_ssl_mode group_replication_start_on_boot
        group_replication_transaction_size_limit group_replication_unreachable_majority_timeout
        gtid_executed_compression_period gtid_mode gtid_purged host_cache_size init_connect
        init_slave innodb_adaptive_flushing innodb_adaptive_flushing_lwm innodb_adaptive_hash_index
        innodb_adaptive_hash_index_parts innodb_adaptive_max_sleep_delay
        innodb_api_bk_commit_interval innodb_api_trx_level innodb_autoextend_increment
        innodb_background_drop_list_empty innodb_buffer_pool_dump_at_shutdown
        innodb_buffer_pool_dump_now innodb_buffer_pool_dump_pct innodb_buffer_pool_filename
        innodb_buffer_pool_load_abort innodb_buffer_pool_load_now innodb_buffer_pool_size
        innodb_change_buffer_max_size innodb_change_buffering innodb_change_buffering_debug
        innodb_checksum_algorithm innodb_cmp_per_index_enabled innodb_commit_concurrency
        innodb_compress_debug innodb_compression_failure_threshold_pct innodb_compression_level
        innodb_compression_pad_pct_max innodb_concurrency_tickets innodb_data_file_path
        innodb_data_home_dir innodb_deadlock_detect innodb_default_row_format
        innodb_disable_resize_buffer_pool_debug innodb_disable_sort_file_cache innodb_fast_shutdown
        innodb_fil_make_page_dirty_debug innodb_file_format innodb_file_format_max
        innodb_file_per_table innodb_fill_factor innodb_flush_log_at_timeout
        innodb_flush_log_at_trx_commit innodb_flush_neighbors innodb_flush_sync
        innodb_flushing_avg_loops innodb_force_recovery innodb_ft_cache_size
        innodb_ft_enable_diag_print innodb_ft_num_word_optimize innodb_ft_result_cache_limit
        innodb_ft_server_stopword_table innodb_ft_sort_pll_degree innodb_ft_total_cache_size
        innodb_io_capacity innodb_io_capacity_max innodb_large_prefix
        innodb_limit_optimistic_insert_debug innodb_log_checkpoint_now innodb_log_checksums
        innodb_log_compressed_pages innodb_log_write_ahead_size innodb_lru_scan_depth
        innodb_max_dirty_pages_pct innodb_max_dirty_pages_pct_lwm innodb_max_purge_lag
        innodb_max_purge_lag_delay innodb_max_undo_log_size innodb_merge_threshold_set_all_debug
        innodb_monitor_disable innodb_monitor_enable innodb_monitor_reset innodb_monitor_reset_all
        innodb_old_blocks_pct innodb_old_blocks_time innodb_online_alter_log_max_size
        innodb_optimize_fulltext_only innodb_print_all_deadlocks innodb_purge_batch_size
        innodb_purge_rseg_truncate_frequency innodb_random_read_ahead innodb_read_ahead_threshold
        innodb_replication_delay innodb_rollback_segments innodb_saved_page_number_debug
        innodb_spin_wait_delay innodb_stats_include_delete_marked innodb_stats_method
        innodb_stats_on_metadata innodb_stats_persistent innodb_stats_persistent_sample_pages
        innodb_stats_sample_pages innodb_stats_transient_sample_pages innodb_status_output
        innodb_status_output_locks innodb_sync_spin_loops innodb_temp_data_file_path
        innodb_thread_concurrency innodb_thread_sleep_delay innodb_trx_purge_view_update_only_debug
        innodb_trx_rseg_n_slots_debug innodb_undo_log_truncate innodb_undo_logs
        internal_tmp_disk_storage_engine key_buffer_size key_cache_age_threshold
        key_cache_block_size key_cache_division_limit keyring_aws_cmk_id keyring_aws_region
        keyring_encrypted_file_data keyring_encrypted_file_password keyring_file_data
        keyring_okv_conf_dir keyring_operations log_bin_trust_function_creators
        log_bin_use_v1_row_events log_builtin_as_identified_by_password log_error_verbosity
        log_output log_queries_not_using_indexes log_slow_admin_statements log_slow_slave_statements
        log_statements_unsafe_for_binlog log_syslog log_syslog_facility log_syslog_include_pid
        log_syslog_tag log_throttle_queries_not_using_indexes log_timestamps log_warnings
        master_verify_checksum max_binlog_cache_size max_binlog_size max_binlog_stmt_cache_size
        max_connect_errors max_connections max_prepared_stmt_count max_relay_log_size max_tmp_tables
        max_write_lock_count mecab_rc_file metadata_locks_cache_size metadata_locks_hash_instances
        myisam_data_pointer_size myisam_max_sort_file_size myisam_use_mmap mysql_firewall_mode
        mysql_firewall_trace mysql_native_password_proxy_users mysqlx_connect_timeout
        mysqlx_idle_worker_thread_timeout mysqlx_max_allowed_packet mysqlx_max_connections
        mysqlx_min_worker_threads ndb_cache_check_time ndb_clear_apply_status
        ndb_data_node_neighbour ndb_default_column_format ndb_distribution
        ndb_eventbuffer_free_percent ndb_eventbuffer_max_alloc ndb_extra_logging
        ndb_log_binlog_index ndb_log_empty_epochs ndb_log_empty_update ndb_log_update_as_write
        ndb_log_update_minimal ndb_log_updated_only ndb_optimization_delay ndb_read_backup
        ndb_recv_thread_activation_threshold ndb_recv_thread_cpu_mask
        ndb_report_thresh_binlog_epoch_slip ndb_report_thresh_binlog_mem_usage
        ndb_show_foreign_key_mock_tables ndb_slave_conflict_role ndbinfo_offline net_retry_count
        ob_compatibility_version ob_early_lock_release ob_enable_sql_audit
        ob_plan_cache_evict_high_percentage ob_plan_cache_evict_low_percentage
        ob_plan_cache_percentage ob_reserved_meta_memory_percentage ob_security_version
        ob_sql_audit_percentage ob_sql_work_area_percentage ob_tcp_invited_nodes offline_mode
        parallel_servers_target performance_schema performance_schema_show_processlist
        privilege_features_enable query_cache_limit query_cache_min_res_unit query_cache_size
        read_only regexp_stack_limit regexp_time_limit relay_log_info_repository relay_log_purge
        replication_optimize_for_static_plugin_config replication_sender_observe_commit_only
        require_secure_transport resource_manager_plan rewriter_enabled rewriter_verbose
        rpl_semi_sync_master_enabled rpl_semi_sync_master_timeout rpl_semi_sync_master_trace_level
        rpl_semi_sync_master_wait_for_slave_count rpl_semi_sync_master_wait_no_slave
        rpl_semi_sync_master_wait_point rpl_semi_sync_slave_enabled rpl_semi_sync_slave_trace_level
        rpl_stop_slave_timeout secure_auth server_id sha256_password_proxy_users
        show_compatibility_56 skip_slave_start slave_allow_batching slave_checkpoint_group
        slave_checkpoint_period slave_compressed_protocol slave_exec_mode slave_load_tmpdir
        slave_max_allowed_packet slave_net_timeout slave_parallel_type slave_parallel_workers
        slave_pending_jobs_size_max slave_preserve_commit_order slave_skip_errors
        slave_sql_verify_checksum slave_transaction_retries slow_launch_time slow_query_log
        slow_query_log_file sql_slave_skip_counter sql_throttle_cpu sql_throttle_io
        sql_throttle_logical_reads sql_throttle_network sql_throttle_priority sql_throttle_rt
        stored_program_cache sync_binlog sync_frm sync_master_info sync_relay_log
        sync_relay_log_info table_open_cache thread_cache_size thread_pool_high_priority_connection
        thread_pool_max_unused_threads thread_pool_prio_kickup_timer thread_pool_stall_limit
        validate_password_check_user_name validate_password_dictionary_file validate_password_length
        validate_password_mixed_case_count validate_password_number_count validate_password_policy
        validate_password_special_char_count version
    """,
    VarFlag.GLOBAL_SCOPE | VarFlag.SESSION_SCOPE: """
        _aggregation_optimization_settings _enable_storage_cardinality_estimation
        _optimizer_cost_based_transformation _optimizer_gather_stats_on_load
        _optimizer_null_aware_antijoin _windowfunc_optimization_settings auto_increment_increment
        auto_increment_offset autocommit big_tables binlog_direct_non_transactional_updates
        binlog_row_image block_encryption_mode bulk_insert_buffer_size cardinality_estimation_model
        completion_type concurrent_insert cte_max_recursion_depth cursor_sharing debug
        default_authentication_plugin default_collation_for_utf8mb4 default_storage_engine
        default_tmp_storage_engine default_week_format disabled_storage_engines
        div_precision_increment enable_optimizer_rowgoal eq_range_index_dive_limit
        error_on_overlap_time explicit_defaults_for_timestamp foreign_key_checks general_log
        group_concat_max_len group_replication_force_members group_replication_group_name
        group_replication_group_seeds group_replication_gtid_assignment_block_size
        group_replication_ip_whitelist group_replication_local_address
        group_replication_recovery_ssl_ca group_replication_recovery_ssl_capath
        group_replication_recovery_ssl_cert group_replication_recovery_ssl_cipher
        group_replication_recovery_ssl_crl group_replication_recovery_ssl_crlpath
        group_replication_recovery_ssl_key have_openssl have_profiling have_ssl hostname
        information_schema_stats_expiry innodb_lock_wait_timeout innodb_strict_mode
        innodb_support_xa innodb_table_locks innodb_tmpdir interactive_timeout join_buffer_size
        keep_files_on_create lc_messages lc_time_names local_infile lock_wait_timeout
        log_row_value_options log_slave_updates long_query_time low_priority_updates
        master_info_repository max_allowed_packet max_delayed_threads max_error_count
        max_execution_time max_heap_table_size max_insert_delayed_threads max_join_size
        max_length_for_sort_data max_seeks_for_key max_sort_length max_sp_recursion_depth
        max_user_connections min_examined_row_limit multi_range_count mview_refresh_dop
        myisam_repair_threads myisam_sort_buffer_size myisam_stats_method
        ndb_allow_copying_alter_table ndb_autoincrement_prefetch_sz ndb_blob_read_batch_bytes
        ndb_blob_write_batch_bytes ndb_deferred_constraints ndb_force_send ndb_fully_replicated
        ndb_index_stat_enable ndb_index_stat_option ndb_join_pushdown ndb_log_exclusive_reads
        ndb_row_checksum ndb_use_exact_count ndb_use_transactions ndbinfo_max_bytes ndbinfo_max_rows
        ndbinfo_show_hidden net_buffer_length net_read_timeout net_write_timeout new
        ob_bnl_join_cache_size ob_check_sys_variable ob_default_lob_inrow_threshold
        ob_enable_aggregation_pushdown ob_enable_index_direct_select ob_enable_jit
        ob_enable_parameter_anonymous_block ob_enable_pl_cache ob_enable_plan_cache
        ob_enable_ps_parameter_anonymous_block ob_enable_rich_error_msg ob_enable_transformation
        ob_enable_transmission_checksum ob_enable_truncate_flashback ob_hnsw_extra_info_max_size
        ob_interm_result_mem_limit ob_log_level ob_max_read_stale_time ob_pl_block_timeout
        ob_query_timeout ob_read_consistency ob_route_policy ob_table_access_policy
        ob_temp_tablespace_size_percentage ob_trx_idle_timeout ob_trx_lock_timeout ob_trx_timeout
        old_alter_table old_passwords optimizer_capture_sql_plan_baselines
        optimizer_dynamic_sampling optimizer_features_enable optimizer_prune_level
        optimizer_search_depth optimizer_switch optimizer_trace optimizer_trace_features
        optimizer_trace_limit optimizer_trace_max_mem_size optimizer_trace_offset
        optimizer_use_sql_plan_baselines parallel_degree_limit parallel_degree_policy
        parallel_min_scan_time_threshold parser_max_mem_size partition_index_dive_limit
        plsql_optimize_level preload_buffer_size profiling profiling_history_size protocol_version
        query_alloc_block_size query_cache_wlock_invalidate query_prealloc_size
        query_rewrite_enabled query_rewrite_integrity range_alloc_block_size range_index_dive_limit
        range_optimizer_max_mem_size read_buffer_size read_rnd_buffer_size recyclebin
        runtime_bloom_filter_max_size runtime_filter_max_in_num runtime_filter_type
        runtime_filter_wait_time_ms session_track_gtids session_track_schema
        session_track_state_change session_track_system_variables session_track_transaction_info
        show_create_table_verbosity show_old_temporals slave_rows_search_algorithms
        slave_type_conversions sort_buffer_size sql_auto_is_null sql_big_selects sql_buffer_result
        sql_log_off sql_mode sql_notes sql_quote_show_create sql_safe_updates sql_select_limit
        sql_throttle_current_priority sql_warnings ssl_ca ssl_capath ssl_cert ssl_cipher ssl_crl
        ssl_crlpath ssl_key table_definition_cache time_format time_zone tls_version tmp_table_size
        tmpdir transaction_alloc_block_size transaction_isolation transaction_prealloc_size
        transaction_read_only transaction_write_set_extraction tx_isolation tx_read_only
        unique_checks updatable_views_with_limit version_compile_machine version_compile_os
        version_tokens_session wait_timeout
    """,
    VarFlag.GLOBAL_SCOPE | VarFlag.SESSION_SCOPE | VarFlag.READONLY: """
        back_log binlog_format binlog_gtid_simple_recovery binlog_rows_query_log_events
        character_set_system core_file date_format datetime_format disconnect_on_expired_password
        gtid_owned have_compress have_statement_timeout ignore_db_dirs init_file
        innodb_api_enable_binlog innodb_locks_unsafe_for_binlog innodb_log_buffer_size
        innodb_log_file_size innodb_log_files_in_group innodb_numa_interleave innodb_open_files
        innodb_page_cleaners innodb_purge_threads innodb_read_io_threads innodb_sync_array_size
        innodb_undo_tablespaces innodb_use_native_aio innodb_write_io_threads large_files_support
        large_page_size large_pages locked_in_memory log_bin_basename log_bin_index ndb_batch_size
        ndb_log_bin ndb_use_copying_alter_table ob_compatibility_mode old open_files_limit
        performance_schema_accounts_size performance_schema_digests_size
        performance_schema_events_stages_history_long_size
        performance_schema_events_stages_history_size
        performance_schema_events_statements_history_long_size
        performance_schema_events_statements_history_size
        performance_schema_events_transactions_history_long_size
        performance_schema_events_transactions_history_size
        performance_schema_events_waits_history_long_size
        performance_schema_events_waits_history_size performance_schema_hosts_size
        performance_schema_max_cond_classes performance_schema_max_cond_instances
        performance_schema_max_digest_length performance_schema_max_file_classes
        performance_schema_max_file_handles performance_schema_max_file_instances
        performance_schema_max_index_stat performance_schema_max_memory_classes
        performance_schema_max_metadata_locks performance_schema_max_mutex_classes
        performance_schema_max_mutex_instances performance_schema_max_prepared_statements_instances
        performance_schema_max_program_instances performance_schema_max_rwlock_classes
        performance_schema_max_rwlock_instances performance_schema_max_socket_classes
        performance_schema_max_socket_instances performance_schema_max_sql_text_length
        performance_schema_max_stage_classes performance_schema_max_statement_classes
        performance_schema_max_statement_stack performance_schema_max_table_handles
        performance_schema_max_table_instances performance_schema_max_table_lock_stat
        performance_schema_max_thread_classes performance_schema_max_thread_instances
        performance_schema_session_connect_attrs_size performance_schema_setup_actors_size
        performance_schema_setup_objects_size performance_schema_users_size relay_log
        relay_log_info_file relay_log_recovery relay_log_space_limit report_host report_password
        report_port report_user skip_name_resolve skip_networking thread_handling thread_stack
        version_tokens_session_number
    """,
    VarFlag.GLOBAL_SCOPE | VarFlag.SESSION_SCOPE | VarFlag.NULLABLE: """
        character_set_client character_set_connection character_set_database
        character_set_filesystem character_set_results character_set_server collation_connection
        collation_database collation_server
    """,
    VarFlag.GLOBAL_SCOPE | VarFlag.READONLY: """
        auto_generate_certs basedir bind_address binlog_checksum character_sets_dir datadir
        gtid_executed have_dynamic_loading have_query_cache have_symlink ignore_builtin_innodb
        innodb_api_disable_rowlock innodb_autoinc_lock_mode innodb_buffer_pool_chunk_size
        innodb_buffer_pool_instances innodb_buffer_pool_load_at_startup innodb_checksums
        innodb_doublewrite innodb_file_format_check innodb_flush_method innodb_force_load_corrupted
        innodb_log_group_home_dir innodb_page_size innodb_read_only innodb_rollback_on_timeout
        innodb_sort_buffer_size innodb_stats_auto_recalc innodb_sync_debug innodb_undo_directory
        innodb_version keyring_aws_conf_file keyring_aws_data_file language lc_messages_dir license
        log_bin log_error lower_case_file_system lower_case_table_names max_digest_length
        myisam_mmap_size mysqlx_bind_address mysqlx_port mysqlx_port_open_timeout mysqlx_socket
        mysqlx_ssl_ca mysqlx_ssl_capath mysqlx_ssl_cert mysqlx_ssl_cipher mysqlx_ssl_crl
        mysqlx_ssl_crlpath mysqlx_ssl_key named_pipe named_pipe_full_access_group
        ndb_cluster_connection_pool ndb_cluster_connection_pool_nodeids ndb_log_apply_status
        ndb_log_fail_terminate ndb_log_orig ndb_log_transaction_id ndb_optimized_node_selection
        ndb_system_name ndb_version ndb_version_string ndb_wait_connected ndb_wait_setup
        ndbinfo_database ndbinfo_table_prefix ndbinfo_version ob_compatibility_control ob_kv_mode
        pid_file plugin_dir port query_cache_type relay_log_basename relay_log_index server_id_bits
        server_uuid sha256_password_auto_generate_rsa_keys sha256_password_private_key_path
        sha256_password_public_key_path shared_memory shared_memory_base_name skip_external_locking
        skip_show_database socket super_read_only system_time_zone table_open_cache_instances
        thread_pool_algorithm thread_pool_size version_comment
    """,
    VarFlag.GLOBAL_SCOPE | VarFlag.NULLABLE: """
        secure_file_priv
    """,
    VarFlag.SESSION_SCOPE: """
        _show_ddl_in_compat_mode enable_sql_plan_monitor error_count gtid_next identity insert_id
        is_result_accurate last_insert_id ndb_table_no_logging ndb_table_temporary
        ob_enable_show_trace ob_hnsw_ef_search ob_ivf_nprobes ob_last_schema_version
        ob_org_cluster_id ob_sparse_drop_ratio_search ob_trace_info pseudo_slave_mode
        pseudo_thread_id rand_seed1 rand_seed2 rbr_exec_mode timestamp tracefile_identifier
        transaction_allow_batching warning_count
    """,
    VarFlag.SESSION_SCOPE | VarFlag.READONLY: """
        have_crypt plugin_load plugin_load_add proxy_user
    """,
    VarFlag.SESSION_SCOPE | VarFlag.READONLY | VarFlag.NULLABLE: """
        external_user
    """,
}

_MARIADB_GROUPS: Dict[VarFlag, str] = {
    VarFlag.GLOBAL_SCOPE: """
        aria_checkpoint_interval aria_checkpoint_log_activity aria_encrypt_tables aria_group_commit
        aria_group_commit_interval aria_log_file_size aria_log_purge_type aria_max_sort_file_size
        aria_page_checksum aria_pagecache_age_threshold aria_pagecache_division_limit
        aria_recover_options aria_sync_log_dir automatic_sp_privileges binlog_cache_size
        binlog_checksum binlog_commit_wait_count binlog_commit_wait_usec binlog_expire_logs_seconds
        binlog_file_cache_size binlog_row_metadata binlog_stmt_cache_size concurrent_insert
        connect_timeout default_password_lifetime delay_key_write delayed_insert_limit
        delayed_insert_timeout delayed_queue_size disconnect_on_expired_password
        encrypt_tmp_disk_tables event_scheduler expire_logs_days extra_max_connections flush
        flush_time ft_boolean_syntax general_log general_log_file gtid_binlog_state
        gtid_cleanup_batch_size gtid_ignore_duplicates gtid_pos_auto_engines gtid_slave_pos
        gtid_strict_mode host_cache_size init_connect init_slave innodb_adaptive_flushing
        innodb_adaptive_flushing_lwm innodb_adaptive_hash_index innodb_alter_copy_bulk
        innodb_autoextend_increment innodb_buf_dump_status_frequency
        innodb_buffer_pool_dump_at_shutdown innodb_buffer_pool_dump_now innodb_buffer_pool_dump_pct
        innodb_buffer_pool_in_core_dump innodb_buffer_pool_load_abort innodb_buffer_pool_load_now
        innodb_buffer_pool_size innodb_buffer_pool_size_auto_min innodb_change_buffer_max_size
        innodb_change_buffering innodb_checksum_algorithm innodb_cmp_per_index_enabled
        innodb_compression_algorithm innodb_compression_failure_threshold_pct
        innodb_compression_level innodb_compression_pad_pct_max innodb_deadlock_detect
        innodb_deadlock_report innodb_default_row_format innodb_defragment
        innodb_defragment_fill_factor innodb_defragment_fill_factor_n_recs
        innodb_defragment_frequency innodb_defragment_n_pages innodb_defragment_stats_accuracy
        innodb_disable_sort_file_cache innodb_encrypt_tables innodb_encryption_rotate_key_age
        innodb_encryption_rotation_iops innodb_encryption_threads innodb_fast_shutdown
        innodb_file_per_table innodb_fill_factor innodb_flush_log_at_timeout
        innodb_flush_log_at_trx_commit innodb_flush_neighbors innodb_flush_sync
        innodb_flushing_avg_loops innodb_force_primary_key innodb_ft_aux_table innodb_ft_cache_size
        innodb_ft_enable_diag_print innodb_ft_num_word_optimize innodb_ft_result_cache_limit
        innodb_ft_server_stopword_table innodb_ft_total_cache_size
        innodb_immediate_scrub_data_uncompressed innodb_instant_alter_column_allowed
        innodb_io_capacity innodb_io_capacity_max innodb_log_checkpoint_now
        innodb_log_file_buffering innodb_log_file_size innodb_log_spin_wait_delay
        innodb_lru_flush_size innodb_lru_scan_depth innodb_max_dirty_pages_pct
        innodb_max_dirty_pages_pct_lwm innodb_max_purge_lag innodb_max_purge_lag_delay
        innodb_max_purge_lag_wait innodb_max_undo_log_size innodb_monitor_disable
        innodb_monitor_enable innodb_monitor_reset innodb_monitor_reset_all innodb_old_blocks_pct
        innodb_old_blocks_time innodb_online_alter_log_max_size innodb_optimize_fulltext_only
        innodb_prefix_index_cluster_optimization innodb_print_all_deadlocks innodb_purge_batch_size
        innodb_purge_rseg_truncate_frequency innodb_purge_threads innodb_random_read_ahead
        innodb_read_ahead_threshold innodb_read_io_threads innodb_read_only_compressed
        innodb_spin_wait_delay innodb_stats_auto_recalc innodb_stats_include_delete_marked
        innodb_stats_method innodb_stats_modified_counter innodb_stats_on_metadata
        innodb_stats_persistent innodb_stats_persistent_sample_pages innodb_stats_traditional
        innodb_stats_transient_sample_pages innodb_status_output innodb_status_output_locks
        innodb_sync_spin_loops innodb_undo_log_truncate innodb_write_io_threads key_buffer_size
        key_cache_age_threshold key_cache_block_size key_cache_division_limit
        key_cache_file_hash_size key_cache_segments local_infile log_bin_compress
        log_bin_compress_min_len log_bin_trust_function_creators log_output log_slow_query_file
        master_verify_checksum max_binlog_cache_size max_binlog_size max_binlog_stmt_cache_size
        max_connect_errors max_connections max_password_errors max_prepared_stmt_count
        max_write_lock_count myisam_data_pointer_size myisam_max_sort_file_size myisam_use_mmap
        mysql56_temporal_format proxy_protocol_networks query_cache_limit query_cache_min_res_unit
        query_cache_size read_binlog_speed_limit read_only relay_log_purge relay_log_recovery
        replicate_do_db replicate_do_table replicate_events_marked_for_skip replicate_ignore_db
        replicate_ignore_table replicate_rewrite_db replicate_wild_do_table
        replicate_wild_ignore_table require_secure_transport rpl_semi_sync_master_enabled
        rpl_semi_sync_master_timeout rpl_semi_sync_master_trace_level
        rpl_semi_sync_master_wait_no_slave rpl_semi_sync_master_wait_point
        rpl_semi_sync_slave_delay_master rpl_semi_sync_slave_enabled
        rpl_semi_sync_slave_kill_conn_timeout rpl_semi_sync_slave_trace_level secure_auth
        slave_compressed_protocol slave_ddl_exec_mode slave_domain_parallel_threads slave_exec_mode
        slave_max_allowed_packet slave_max_statement_time slave_net_timeout
        slave_parallel_max_queued slave_parallel_mode slave_parallel_threads slave_parallel_workers
        slave_run_triggers_for_rbr slave_sql_verify_checksum slave_transaction_retries
        slave_transaction_retry_interval slave_type_conversions slow_launch_time slow_query_log_file
        stored_program_cache strict_password_validation sync_binlog sync_frm sync_master_info
        sync_relay_log sync_relay_log_info table_definition_cache table_open_cache
        tcp_keepalive_interval tcp_keepalive_probes tcp_keepalive_time thread_cache_size
        thread_pool_dedicated_listener thread_pool_exact_stats thread_pool_idle_timeout
        thread_pool_max_threads thread_pool_oversubscribe thread_pool_prio_kickup_timer
        thread_pool_size thread_pool_stall_limit userstat wsrep_auto_increment_control
        wsrep_certification_rules wsrep_certify_nonpk wsrep_cluster_address wsrep_cluster_name
        wsrep_convert_lock_to_trx wsrep_dbug_option wsrep_debug wsrep_desync
        wsrep_drupal_282555_workaround wsrep_forced_binlog_format wsrep_gtid_domain_id
        wsrep_gtid_mode wsrep_ignore_apply_errors wsrep_load_data_splitting wsrep_log_conflicts
        wsrep_max_ws_rows wsrep_max_ws_size wsrep_mode wsrep_mysql_replication_bundle
        wsrep_node_address wsrep_node_incoming_address wsrep_node_name wsrep_provider_options
        wsrep_reject_queries wsrep_restart_slave wsrep_slave_fk_checks wsrep_slave_threads
        wsrep_slave_uk_checks wsrep_sst_auth wsrep_sst_donor wsrep_sst_donor_rejects_queries
        wsrep_sst_method wsrep_sst_receive_address wsrep_start_position
    """,
    VarFlag.GLOBAL_SCOPE | VarFlag.SESSION_SCOPE: """
        alter_algorithm analyze_max_length analyze_sample_percentage aria_repair_threads
        aria_sort_buffer_size aria_stats_method auto_increment_increment auto_increment_offset
        autocommit big_tables binlog_alter_two_phase binlog_annotate_row_events
        binlog_direct_non_transactional_updates binlog_format binlog_row_image
        bulk_insert_buffer_size character_set_client character_set_connection character_set_database
        character_set_filesystem character_set_results character_set_server check_constraint_checks
        collation_connection collation_database collation_server column_compression_threshold
        column_compression_zlib_level column_compression_zlib_strategy column_compression_zlib_wrap
        completion_type deadlock_search_depth_long deadlock_search_depth_short deadlock_timeout_long
        deadlock_timeout_short default_regex_flags default_storage_engine default_tmp_storage_engine
        default_week_format div_precision_increment enforce_storage_engine eq_range_index_dive_limit
        expensive_subquery_limit explicit_defaults_for_timestamp foreign_key_checks
        group_concat_max_len gtid_domain_id histogram_size histogram_type
        idle_readonly_transaction_timeout idle_transaction_timeout idle_write_transaction_timeout
        in_predicate_conversion_threshold innodb_compression_default
        innodb_default_encryption_key_id innodb_ft_enable_stopword innodb_ft_user_stopword_table
        innodb_lock_wait_timeout innodb_snapshot_isolation innodb_strict_mode innodb_table_locks
        innodb_tmpdir interactive_timeout join_buffer_size join_buffer_space_limit join_cache_level
        keep_files_on_create lc_messages lc_time_names lock_wait_timeout log_disabled_statements
        log_queries_not_using_indexes log_slow_admin_statements log_slow_disabled_statements
        log_slow_filter log_slow_max_warnings log_slow_min_examined_row_limit log_slow_query
        log_slow_query_time log_slow_rate_limit log_slow_slave_statements log_slow_verbosity
        log_warnings long_query_time low_priority_updates max_allowed_packet max_delayed_threads
        max_error_count max_heap_table_size max_insert_delayed_threads max_join_size
        max_length_for_sort_data max_recursive_iterations max_relay_log_size max_rowid_filter_size
        max_seeks_for_key max_session_mem_used max_sort_length max_sp_recursion_depth
        max_statement_time max_tmp_tables max_user_connections min_examined_row_limit
        mrr_buffer_size myisam_repair_threads myisam_sort_buffer_size myisam_stats_method
        net_buffer_length net_read_timeout net_retry_count net_write_timeout note_verbosity old
        old_alter_table old_mode old_passwords optimizer_adjust_secondary_key_costs
        optimizer_extra_pruning_depth optimizer_join_limit_pref_ratio optimizer_max_sel_arg_weight
        optimizer_max_sel_args optimizer_prune_level optimizer_search_depth
        optimizer_selectivity_sampling_limit optimizer_switch optimizer_trace
        optimizer_trace_max_mem_size optimizer_use_condition_selectivity preload_buffer_size
        profiling profiling_history_size progress_report_time query_alloc_block_size
        query_cache_strip_comments query_cache_type query_cache_wlock_invalidate query_prealloc_size
        range_alloc_block_size read_buffer_size read_rnd_buffer_size rowid_merge_buff_size server_id
        session_track_schema session_track_state_change session_track_system_variables
        session_track_transaction_info slow_query_log sort_buffer_size sql_auto_is_null
        sql_big_selects sql_buffer_result sql_if_exists sql_log_bin sql_log_off sql_mode sql_notes
        sql_quote_show_create sql_safe_updates sql_select_limit sql_slave_skip_counter sql_warnings
        standard_compliant_cte storage_engine system_versioning_alter_history system_versioning_asof
        system_versioning_insert_history tcp_nodelay thread_pool_priority time_zone
        tmp_disk_table_size tmp_memory_table_size tmp_table_size transaction_alloc_block_size
        transaction_prealloc_size tx_isolation tx_read_only unique_checks updatable_views_with_limit
        use_stat_tables wait_timeout wsrep_causal_reads wsrep_dirty_reads wsrep_on wsrep_osu_method
        wsrep_retry_autocommit wsrep_sync_wait wsrep_trx_fragment_size wsrep_trx_fragment_unit
    """,
    VarFlag.GLOBAL_SCOPE | VarFlag.READONLY: """
        allow_suspicious_udfs aria_block_size aria_force_start_after_recovery_failures
        aria_log_dir_path aria_pagecache_buffer_size aria_pagecache_file_hash_size
        aria_used_for_temp_tables back_log basedir bind_address binlog_optimize_thread_scheduling
        character_set_system character_sets_dir core_file datadir date_format datetime_format
        debug_no_thread_alarm encrypt_binlog encrypt_tmp_files extra_port ft_max_word_len
        ft_min_word_len ft_query_expansion_limit ft_stopword_file gtid_binlog_pos gtid_current_pos
        have_compress have_crypt have_dynamic_loading have_geometry have_openssl have_profiling
        have_query_cache have_rtree_keys have_ssl have_symlink hostname ignore_builtin_innodb
        ignore_db_dirs init_file innodb_adaptive_hash_index_parts innodb_autoinc_lock_mode
        innodb_buffer_pool_chunk_size innodb_buffer_pool_filename innodb_buffer_pool_load_at_startup
        innodb_buffer_pool_size_max innodb_data_file_path innodb_data_home_dir innodb_doublewrite
        innodb_encrypt_log innodb_encrypt_temporary_tables innodb_fatal_semaphore_wait_threshold
        innodb_flush_method innodb_force_recovery innodb_ft_max_token_size innodb_ft_min_token_size
        innodb_ft_sort_pll_degree innodb_linux_aio innodb_log_buffer_size innodb_log_file_mmap
        innodb_log_group_home_dir innodb_log_write_ahead_size innodb_numa_interleave
        innodb_open_files innodb_page_size innodb_read_only innodb_rollback_on_timeout
        innodb_sort_buffer_size innodb_temp_data_file_path innodb_undo_directory
        innodb_undo_tablespaces innodb_use_atomic_writes innodb_use_native_aio large_files_support
        large_page_size large_pages lc_messages_dir license locked_in_memory log_bin
        log_bin_basename log_bin_index log_error log_slave_updates log_tc_size
        lower_case_file_system lower_case_table_names max_digest_length metadata_locks_cache_size
        metadata_locks_hash_instances myisam_block_size myisam_mmap_size myisam_recover_options
        open_files_limit performance_schema performance_schema_accounts_size
        performance_schema_digests_size performance_schema_events_stages_history_long_size
        performance_schema_events_stages_history_size
        performance_schema_events_statements_history_long_size
        performance_schema_events_statements_history_size
        performance_schema_events_transactions_history_long_size
        performance_schema_events_transactions_history_size
        performance_schema_events_waits_history_long_size
        performance_schema_events_waits_history_size performance_schema_hosts_size
        performance_schema_max_cond_classes performance_schema_max_cond_instances
        performance_schema_max_digest_length performance_schema_max_file_classes
        performance_schema_max_file_handles performance_schema_max_file_instances
        performance_schema_max_index_stat performance_schema_max_memory_classes
        performance_schema_max_metadata_locks performance_schema_max_mutex_classes
        performance_schema_max_mutex_instances performance_schema_max_prepared_statements_instances
        performance_schema_max_program_instances performance_schema_max_rwlock_classes
        performance_schema_max_rwlock_instances performance_schema_max_socket_classes
        performance_schema_max_socket_instances performance_schema_max_sql_text_length
        performance_schema_max_stage_classes performance_schema_max_statement_classes
        performance_schema_max_statement_stack performance_schema_max_table_handles
        performance_schema_max_table_instances performance_schema_max_table_lock_stat
        performance_schema_max_thread_classes performance_schema_max_thread_instances
        performance_schema_session_connect_attrs_size performance_schema_setup_actors_size
        performance_schema_setup_objects_size performance_schema_users_size pid_file plugin_dir
        plugin_maturity port protocol_version relay_log relay_log_basename relay_log_index
        relay_log_info_file relay_log_space_limit replicate_annotate_row_events report_host
        report_password report_port report_user secure_file_priv secure_timestamp server_uid
        skip_external_locking skip_grant_tables skip_name_resolve skip_networking skip_show_database
        slave_load_tmpdir slave_skip_errors slave_transaction_retry_errors socket ssl_ca ssl_capath
        ssl_cert ssl_cipher ssl_crl ssl_crlpath ssl_key system_time_zone table_open_cache_instances
        thread_handling thread_stack time_format tls_version tmpdir version version_comment
        version_compile_machine version_compile_os version_malloc_library version_source_revision
        version_ssl_library wsrep_allowlist wsrep_data_home_dir wsrep_notify_cmd wsrep_patch_version
        wsrep_provider wsrep_recover wsrep_sr_store wsrep_status_file
    """,
    VarFlag.SESSION_SCOPE: """
        default_master_connection gtid_seq_no identity insert_id last_insert_id pseudo_slave_mode
        pseudo_thread_id rand_seed1 rand_seed2 skip_parallel_replication skip_replication timestamp
        wsrep_gtid_seq_no
    """,
    VarFlag.SESSION_SCOPE | VarFlag.READONLY: """
        error_count external_user in_transaction last_gtid proxy_user warning_count
    """,
}


def _index(groups: Dict[VarFlag, str]) -> Dict[str, VarFlag]:
    return {name: flags for flags, names in groups.items() for name in names.split()}


_OCEANBASE = _index(_OCEANBASE_GROUPS)
_MARIADB = _index(_MARIADB_GROUPS)


def flags_of(name: str, oceanbase: bool = True) -> VarFlag:
    """
    The flags of system variable C{name} (case-insensitive).

    @param name: the variable's name, without C{@@}.
    @param oceanbase: the backend is OceanBase (seekdb included); C{False}
        for MySQL/MariaDB. Its own table is asked first, then the other.
    @return: the flags; L{DEFAULT_FLAGS} for a variable neither table knows.
    """
    lowered = name.lower()
    first, second = (_OCEANBASE, _MARIADB) if oceanbase else (_MARIADB, _OCEANBASE)
    found = first.get(lowered)
    if found is None:
        found = second.get(lowered, DEFAULT_FLAGS)
    return found


def sys_variable_flag(name: str, oceanbase: bool = True) -> str:
    """
    The C{sys_variable_flag} cell of system variable C{name}, e.g.
    C{" && invisible && session_scope && readonly"} (note the leading blank,
    as ODP prints it).

    @param name: the variable's name, without C{@@}.
    @param oceanbase: see L{flags_of}.
    """
    flags = flags_of(name, oceanbase)
    return "".join(spelling for flag, spelling in _SPELLING if flags & flag)
