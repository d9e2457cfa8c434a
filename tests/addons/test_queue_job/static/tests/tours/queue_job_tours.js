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
