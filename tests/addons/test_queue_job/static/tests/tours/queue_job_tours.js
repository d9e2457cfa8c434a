// License LGPL-3.0 or later (https://www.gnu.org/licenses/lgpl.html)
import { registry } from "@web/core/registry";
import { stepUtils } from "@web_tour/tour_utils";

// The Python test saves a screenshot when it reads this log line (see test_ui.py).
const SCREENSHOT_MARK = "queue_job_screenshot:";

function screenshot(name, trigger) {
    return {
        content: `Screenshot: ${name}`,
        trigger,
        async run() {
            this.anchor.scrollIntoView({ block: "center" });
            console.log(`${SCREENSHOT_MARK}${name}`);
            // The browser captures asynchronously: keep the page still meanwhile.
            await new Promise((resolve) => setTimeout(resolve, 1000));
        },
    };
}

function filterJobs(filterName) {
    return [
        {
            content: "Open the search options",
            trigger: ".o_control_panel_actions .o_searchview_dropdown_toggler",
            run: "click",
        },
        {
            content: `Filter the ${filterName} jobs`,
            trigger: `.o_filter_menu .o-dropdown-item:contains("${filterName}")`,
            run: "click",
        },
        {
            content: "Close the search options",
            trigger: ".o_control_panel_actions .o_searchview_dropdown_toggler",
            run: "click",
        },
        {
            content: "Only those jobs are listed",
            trigger: `.o_searchview_facet:contains("${filterName}")`,
        },
    ];
}

function openJob(name) {
    return {
        content: `Open ${name}`,
        trigger: `.o_list_view .o_data_row td[name=name]:contains("${name}")`,
        run: "click",
    };
}

function jobState(state) {
    return {
        content: `The job is ${state}`,
        trigger: `.o_form_view .o_statusbar_status .o_arrow_button_current:contains("${state}")`,
    };
}

function showDependencies() {
    return {
        content: "Show the jobs this one waits for and those waiting for it",
        trigger: '.o_form_view .o_notebook .nav-link:contains("Dependencies")',
        run: "click",
    };
}

function dependentState(name, state) {
    return {
        content: `${name}, waiting for this job, is ${state}`,
        trigger: `.o_field_widget[name=dependent_job_ids] .o_data_row:has(td[name=name]:contains("${name}")) td[name=state]:contains("${state}")`,
    };
}

registry.category("web_tour.tours").add("queue_job_set_done_releases_callback", {
    url: "/odoo",
    steps: () => [
        ...stepUtils.goToAppSteps("queue_job.menu_queue_job_root", "Open the Job Queue"),
        ...filterJobs("Failed"),
        {
            content: "The failed member is listed, the jobs that are not failed are not",
            trigger: '.o_list_view:has(.o_data_row td[name=name]:contains("QJ tour member a")):not(:has(.o_data_row td[name=name]:contains("QJ tour member b")))',
        },
        screenshot("failed_jobs_list", '.o_list_view .o_data_row td[name=state]:contains("Failed")'),
        openJob("QJ tour member a"),
        jobState("Failed"),
        showDependencies(),
        dependentState("QJ tour callback", "Failed"),
        screenshot("failed_member_form", ".o_field_widget[name=dependent_job_ids] .o_data_row"),
        {
            content: "Set the failed member done",
            trigger: '.o_form_view button[name=button_done]',
            run: "click",
        },
        jobState("Done"),
        showDependencies(),
        dependentState("QJ tour callback", "Pending"),
        screenshot("member_set_done_form", ".o_field_widget[name=dependent_job_ids] .o_data_row"),
    ],
});

registry.category("web_tour.tours").add("queue_job_set_failed_fails_callback", {
    url: "/odoo",
    steps: () => [
        ...stepUtils.goToAppSteps("queue_job.menu_queue_job_root", "Open the Job Queue"),
        ...filterJobs("Pending"),
        openJob("QJ tour member a"),
        jobState("Pending"),
        showDependencies(),
        dependentState("QJ tour callback", "Wait Dependencies"),
        {
            content: "Set the member failed",
            trigger: '.o_form_view button[name=button_failed]',
            run: "click",
        },
        {
            content: "Confirm: the callback will fail with it",
            trigger: '.modal:contains("will fail with it") .modal-footer .btn-primary',
            run: "click",
        },
        jobState("Failed"),
        showDependencies(),
        dependentState("QJ tour callback", "Failed"),
        screenshot("member_set_failed_form", ".o_field_widget[name=dependent_job_ids] .o_data_row"),
    ],
});

registry.category("web_tour.tours").add("queue_job_list_action_wizard", {
    url: "/odoo",
    steps: () => [
        ...stepUtils.goToAppSteps("queue_job.menu_queue_job_root", "Open the Job Queue"),
        {
            content: "The three jobs of the graph are listed",
            trigger: ".o_list_view .o_pager_value:contains(3)",
        },
        {
            content: "Select every job",
            trigger: "thead .o_list_record_selector",
            run: "click",
        },
        {
            content: "Open the actions of the selection",
            trigger: ".o_cp_action_menus button",
            run: "click",
        },
        {
            content: "Set them failed",
            trigger: '.o-dropdown--menu .o-dropdown-item:contains("Set Jobs Failed")',
            run: "click",
        },
        {
            content: "The wizard says which jobs the action skips",
            trigger: '.modal .alert-warning:contains("1") [name=skipped_job_count]',
        },
        screenshot("wizard", ".modal [name=job_ids] .o_data_row"),
        {
            content: "Confirm",
            trigger: ".modal .modal-footer button[name=action_confirm]",
            run: "click",
        },
        {
            content: "The notification tells what was skipped",
            trigger: '.o_notification:contains("2 job(s) set to failed. 1 job(s) skipped")',
        },
        {
            content: "The list shows the new states",
            trigger: '.o_list_view:not(:has(.modal)) .o_data_row:has(td[name=name]:contains("QJ tour callback")) td[name=state]:contains("Failed")',
        },
        screenshot("list_after_action", ".o_list_view .o_data_row"),
    ],
});

registry.category("web_tour.tours").add("queue_job_overview_failed_jobs", {
    steps: () => [
        {
            content: "The overview has a card for the channel, with its failed jobs counted",
            trigger: '.o_kanban_record:contains("root.qj_tour") a.o_queue_job_overview_failed:contains("3")',
        },
        {
            content: "So are the failed jobs of the last hour",
            trigger: '.o_kanban_record:contains("root.qj_tour") a.o_queue_job_overview_failed_last_hour:contains("3")',
        },
        {
            content: "Its pending member is counted too",
            trigger: '.o_kanban_record:contains("root.qj_tour") a.o_queue_job_overview_pending:contains("2")',
        },
        screenshot("overview", '.o_kanban_record:contains("root.qj_tour")'),
        {
            content: "Follow the failed count",
            trigger: '.o_kanban_record:contains("root.qj_tour") a.o_queue_job_overview_failed',
            run: "click",
        },
        {
            content: "The failed jobs of the channel are listed, and only they",
            trigger: '.o_list_view:has(.o_data_row td[name=name]:contains("QJ lone")):has(.o_data_row td[name=name]:contains("QJ graph member c")):has(.o_data_row td[name=name]:contains("QJ graph callback")):not(:has(.o_data_row td[name=name]:contains("QJ graph member a")))',
        },
        {
            content: "Three of them",
            trigger: ".o_list_view .o_pager_value:contains(3)",
        },
        screenshot("failed_jobs", ".o_list_view .o_data_row"),
    ],
});

function graphNode(name, state) {
    return `.o_queue_job_graph .o_queue_job_graph_node.o_queue_job_graph_state_${state}:has(title:contains("${name}"))`;
}

registry.category("web_tour.tours").add("queue_job_graph_picture", {
    steps: () => [
        jobState("Wait Dependencies"),
        {
            content: "The callback is drawn, marked as the current job",
            trigger: `${graphNode("QJ graph callback", "wait_dependencies")}.o_queue_job_graph_current`,
        },
        {
            content: "Its members are drawn in the colours of their states",
            trigger: `${graphNode("QJ graph member a", "done")}, ${graphNode("QJ graph member b", "started")}, ${graphNode("QJ graph member c", "pending")}`,
        },
        {
            content: "An arrow from each member to the callback",
            trigger: ".o_queue_job_graph svg:has(.o_queue_job_graph_edge + .o_queue_job_graph_edge + .o_queue_job_graph_edge)",
        },
        screenshot("callback_graph", ".o_queue_job_graph"),
        {
            content: "Open member a from its node",
            trigger: graphNode("QJ graph member a", "done"),
            run: "click",
        },
        {
            content: "Member a's form opens",
            trigger: '.o_form_view .oe_title:contains("QJ graph member a")',
        },
        jobState("Done"),
        showDependencies(),
        {
            content: "Member a is now the current job of the same graph",
            trigger: `${graphNode("QJ graph member a", "done")}.o_queue_job_graph_current`,
        },
        screenshot("member_form", ".o_queue_job_graph"),
    ],
});

registry.category("web_tour.tours").add("queue_job_jobs_per_minute", {
    steps: () => [
        {
            content: "The line chart of jobs done and failed per minute is drawn",
            trigger: ".o_graph_view .o_graph_renderer canvas",
        },
        {
            content: "Its series are the done and the failed jobs",
            trigger: '.o_graph_view:has(.o_graph_renderer) .o_control_panel:contains("Jobs per Minute")',
        },
        screenshot("jobs_per_minute", ".o_graph_renderer canvas"),
    ],
});

registry.category("web_tour.tours").add("queue_job_graph_picture_large_group", {
    steps: () => [
        jobState("Failed"),
        showDependencies(),
        {
            content: "The 500 members are one node, with their counts by state",
            trigger: '.o_queue_job_graph .o_queue_job_graph_group:has(.o_queue_job_graph_detail:contains("500 jobs")):has(.o_queue_job_graph_segment_done):has(.o_queue_job_graph_segment_failed):has(.o_queue_job_graph_segment_pending)',
        },
        {
            content: "Beside the callback, and nothing else",
            trigger: ".o_queue_job_graph svg:has(.o_queue_job_graph_current):not(:has(.o_queue_job_graph_node:nth-of-type(3)))",
        },
        screenshot("large_group_graph", ".o_queue_job_graph"),
        {
            content: "Open the members from their node",
            trigger: ".o_queue_job_graph .o_queue_job_graph_group",
            run: "click",
        },
        {
            content: "The 500 members are listed",
            trigger: ".o_list_view .o_pager_limit:contains(500)",
        },
    ],
});

// Channels: tests/e2e/test_channel_tours.py runs these against a server
// whose runner starts the jobs, and checks the jobs between the tours.

// The tours start on the list of channels (the action's path).
const CHANNELS_URL = "/odoo/queue-job-channels";

function openChannels() {
    return [
        {
            content: "The channels are listed",
            trigger: ".o_list_view .o_data_row td[name=complete_name]",
        },
    ];
}

function channelRow(name) {
    return `.o_list_view .o_data_row:has(td[name=complete_name]:contains("${name}"))`;
}

function openChannel(name) {
    return [
        ...openChannels(),
        {
            content: `Open ${name}`,
            trigger: `${channelRow(name)} td[name=complete_name]`,
            run: "click",
        },
    ];
}

function inForce(setting) {
    return {
        content: `In force: ${setting}`,
        trigger: `.o_form_view .o_field_widget[name=setting_in_force]:contains("${setting}")`,
    };
}

registry.category("web_tour.tours").add("queue_job_channel_capacity", {
    url: CHANNELS_URL,
    steps: () => [
        ...openChannel("root.tour_capacity"),
        inForce("root.tour_capacity:1"),
        {
            content: "The values come from the channel's record",
            trigger: '.o_form_view .o_field_widget[name=setting_source]:contains("Database")',
        },
        {
            content: "Set the capacity to 3",
            trigger: ".o_form_view .o_field_widget[name=capacity] input",
            run: "edit 3",
        },
        {
            content: "Save",
            trigger: ".o_form_view .o_form_button_save",
            run: "click",
        },
        inForce("root.tour_capacity:3"),
        screenshot("capacity_saved", ".o_form_view .o_field_widget[name=setting_in_force]"),
    ],
});

registry.category("web_tour.tours").add("queue_job_channel_running", {
    url: CHANNELS_URL,
    steps: () => [
        ...openChannels(),
        {
            content: "Three jobs of the channel run at once",
            trigger: `${channelRow("root.tour_capacity")} td[name=running_job_count]:contains("3")`,
        },
        screenshot("three_running", channelRow("root.tour_capacity")),
    ],
});

registry.category("web_tour.tours").add("queue_job_channel_pause", {
    url: CHANNELS_URL,
    steps: () => [
        ...openChannels(),
        {
            content: "Select the channel to pause",
            trigger: `${channelRow("root.tour_paused")} .o_list_record_selector input`,
            run: "click",
        },
        {
            content: "Pause it from the list",
            trigger: '.o_list_view .o_control_panel_actions button[name=action_pause], .o_list_buttons button[name=action_pause], button[name=action_pause]',
            run: "click",
        },
        {
            content: "It is paused",
            trigger: `${channelRow("root.tour_paused")} td[name=paused] input:checked`,
        },
        screenshot("paused_list", channelRow("root.tour_paused")),
    ],
});

registry.category("web_tour.tours").add("queue_job_channel_resume", {
    url: CHANNELS_URL,
    steps: () => [
        ...openChannels(),
        {
            content: "The paused channel's jobs wait, the other channel's ran",
            trigger: `${channelRow("root.tour_paused")} td[name=pending_job_count]:contains("2")`,
        },
        screenshot("paused_jobs_pending", ".o_list_view"),
        {
            content: `Open root.tour_paused`,
            trigger: `${channelRow("root.tour_paused")} td[name=complete_name]`,
            run: "click",
        },
        inForce("root.tour_paused:2:paused"),
        {
            content: "Resume",
            trigger: ".o_form_view button[name=action_resume]",
            run: "click",
        },
        inForce("root.tour_paused:2"),
    ],
});
